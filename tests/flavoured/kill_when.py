"""``python kill_when.py PATTERN TIMEOUT LOG COMMAND...``: run COMMAND (output to LOG) and
kill it with SIGKILL as soon as a path matches the glob PATTERN; exit 0 once it is killed
that way, 1 if it ended first or TIMEOUT seconds passed (or SIGTERM arrived: COMMAND is
killed too).

test_core.py runs it as a process of its own, which imports nothing heavy and polls every
few milliseconds, so the kill lands at once even while the test process is busy training.
"""

import glob
import signal
import subprocess
import sys
import time


def main(pattern, timeout, log_path, *command):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # terminated: still kill the command (finally)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + float(timeout)
        try:
            while not glob.glob(pattern):
                if process.poll() is not None:
                    print(f"the command ended (exit {process.returncode}) before {pattern} existed")
                    return 1
                if time.monotonic() > deadline:
                    print(f"timed out after {timeout}s waiting for {pattern}")
                    return 1
                time.sleep(0.005)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    print(f"killed: exit {process.returncode}")
    return 0 if process.returncode == -signal.SIGKILL else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
