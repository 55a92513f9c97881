import os
import signal
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from keeper.core.runtime import run

    async def main():
        print("ready", flush=True)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(asyncio.sleep(3600))
    if sys.argv[1] == "crash":
        async def main():
            raise RuntimeError("boom")
    sys.exit(run(main))
    """
)


def test_sigterm_exits_zero() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_sigint_exits_zero() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_crash_exits_nonzero() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "crash"], capture_output=True, timeout=20)
    assert proc.returncode == 1
    assert b"boom" in proc.stderr
