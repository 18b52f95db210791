# Connects to a server on the host's loopback.
import socket

s = socket.create_connection(("127.0.0.1", $port), timeout=2)
s.sendall(b"exfiltrated")
# ---- tests ----
