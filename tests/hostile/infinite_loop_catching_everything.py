# Spins forever and swallows every exception it can (only SIGKILL of the group ends it).
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
# ---- tests ----
