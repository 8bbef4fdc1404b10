"""What a worker without its inotify cache costs (docs/operating.md): the
callgrind measure of `make callgrind` (bench/callgrind.py), instructions a
request over plain round robin of the same request, for the module with its
cache and for the module run as a fresh system user whose every inotify
instance (fs.inotify.max_user_instances) another process of that user holds,
so that the module has none. The machine's limit is left as it is.

    python3 bench/uncached.py     (as root; valgrind and wrk)
"""

import ctypes
import os
import signal
import statistics
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callgrind  # noqa: E402

HOLD = """
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while libc.inotify_init1(0o2000000) >= 0:
    fds.append(1)
print(len(fds), flush=True)
signal.pause()
"""


def main():
    if os.geteuid() != 0:
        sys.exit("uncached.py runs the front as a fresh system user: run it as root")
    user = "sms-bench-" + uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
    holder = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        cached = callgrind.run(status=False)
        holder = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                                   sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
        held = int(holder.stdout.readline())
        uncached = callgrind.run(status=False, user=user)
    finally:
        if holder:
            holder.send_signal(signal.SIGTERM)
            holder.wait()
        subprocess.run(["userdel", user], check=False)
    median = statistics.median
    print(f"instructions a request over plain round robin (callgrind, median of {callgrind.REPEATS}); "
          f"uncached: {held} inotify instances held")
    for path, name in (("/valid", "valid built-in session, no affinity"),
                       ("/invocations", "built-in session with affinity"),
                       ("/generate", "engine-owned session with affinity")):
        c, u = median(cached[path]), median(uncached[path])
        print(f"  {name:<40} cached {c:>7,.0f}   uncached {u:>7,.0f}   ({u - c:+,.0f})")


if __name__ == "__main__":
    main()
