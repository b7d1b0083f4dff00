"""Run many `mmspec` command lines, each in its own forked process, and measure each one.

Used by tests/test_corpus.py: ``python tests/corpus/driver.py CASES.json RESULTS.json``. CASES.json is a
list of ``{"id", "argv", "cwd"}`` (optionally ``"retry_over"``, seconds). The driver imports the CLI and
builds the spec model once (so every case starts warm, as the second run of a console script would), then
forks one child per case. The
child runs ``mmspec.cli.run(argv)`` with stdout and stderr redirected at the file-descriptor level, as
the `mmspec` console script would; the parent reaps it with ``os.wait4`` and records the exit code,
both streams, wall time, CPU time, the child's peak RSS (``ru_maxrss``: the pages it inherited and
touched plus everything it allocated) and whether the child imported torch or onnxruntime. A case still
running after `--timeout` seconds is killed and reported as such. A case over `--retry-over` seconds
is run once more and the faster run is kept (CI machines are noisy; a real regression is slow twice).
With `--preload-torch` the driver imports torch and the ONNX backends before forking, for cases that need
them anyway (reading a checkpoint): their times then exclude that import, their peak RSS includes it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback


def _child(argv: list[str], cwd: str, out_fd: int, err_fd: int, info_path: str) -> None:
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    code = 1
    try:
        from mmspec.cli import run

        os.chdir(cwd)
        code = run(argv)
    except BaseException:  # the interpreter would print this traceback: make it visible to the test
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(info_path, "w") as f:
            json.dump({"torch": "torch" in sys.modules, "onnxruntime": "onnxruntime" in sys.modules}, f)
        os._exit(code if isinstance(code, int) else 1)


def run_case(argv: list[str], cwd: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mmspec-corpus-") as tmp:
        paths = [os.path.join(tmp, n) for n in ("stdout", "stderr", "info.json")]
        out_fd, err_fd = (os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for p in paths[:2])
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(argv, cwd, out_fd, err_fd, paths[2])
        os.close(out_fd)
        os.close(err_fd)
        timed_out = False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() - start > timeout:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                timed_out = True
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
        texts = []
        for p in paths[:2]:
            with open(p, "rb") as f:
                texts.append(f.read().decode("utf-8", "replace"))
        try:
            with open(paths[2]) as f:
                info = json.load(f)
        except (OSError, ValueError):
            info = {}
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": texts[0],
        "stderr": texts[1],
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
        "timed_out": timed_out,
        "imported": info,
    }


def main(argv: list[str]) -> int:
    cases_path, results_path, *rest = argv
    timeout = float(rest[rest.index("--timeout") + 1]) if "--timeout" in rest else 30.0
    retry_over = float(rest[rest.index("--retry-over") + 1]) if "--retry-over" in rest else 2.0
    if "--preload-torch" in rest:  # cases that must import torch anyway (weights): start them with it loaded
        import torch  # noqa: F401

        import mmspec.backends  # noqa: F401
    import mmspec.api
    import mmspec.cli  # noqa: F401  (warm: the CLI and its commands, before the first fork)

    mmspec.api.spec_model()  # warm: the pydantic model of the registry
    with open(cases_path) as f:
        cases = json.load(f)
    results = {}
    for case in cases:
        result = run_case(case["argv"], case["cwd"], timeout)
        if result["wall_s"] > case.get("retry_over", retry_over) and not result["timed_out"]:
            again = run_case(case["argv"], case["cwd"], timeout)
            result = {**min(result, again, key=lambda r: r["wall_s"]), "retried": True}
        results[case["id"]] = result
    with open(results_path, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
