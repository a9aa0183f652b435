"""Starting and stopping the rig's processes.

Each process runs in its own session (so its own process group), writes stdout and stderr to a log
file, and is considered up once `ready` finds its ready line in that log (a regex, or a function
from the log text to a match or None). Stopping signals the
process group it started, and nothing else. When $E2E_PIDS_FILE is set, every started group's id is
appended there so scripts/e2e.sh can clean up after a crashed pytest.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ProcessFailed(RuntimeError):
    pass


class Process:
    def __init__(self, name: str, argv: list[str], log_path: Path, ready: str | Callable[[str], object],
                 env: dict | None = None, cwd: str | Path | None = None, user: str | None = None):
        """`user`: run as this account (only possible when the rig runs as root)."""
        self.name, self.argv, self.log_path = name, argv, Path(log_path)
        self.user = user
        self.ready = re.compile(ready).search if isinstance(ready, str) else ready
        self.env, self.cwd = env, cwd
        self.popen: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = 60):
        """Starts the process and waits for its ready line; returns what `ready` found."""
        assert not self.running, f"{self.name} is already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            offset = log.tell()
            identity = {}
            if self.user is not None:
                account = pwd.getpwnam(self.user)
                identity = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True, **identity,
            )
        pids_file = os.environ.get("E2E_PIDS_FILE")
        if pids_file:
            with open(pids_file, "a") as f:
                f.write(f"{self.popen.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
            match = self.ready(text)
            if match:
                return match
            if self.popen.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with {self.popen.returncode} before it was ready:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessFailed(f"{self.name} was not ready within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the process group this started, SIGKILL if it lingers."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self.popen = None

    def uid(self) -> int:
        """The real user id of the running process, read from /proc."""
        assert self.popen is not None
        with open(f"/proc/{self.popen.pid}/status") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        raise ProcessFailed(f"{self.name}: no Uid line in /proc/{self.popen.pid}/status")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
