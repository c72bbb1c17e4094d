"""The plug-in (plain lua5.4, the stub darktable) with the real `dt-deconvolve` and a real
worker, on pictures whose names attack its line protocol (issue 11: F1)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_support import ROOT, private_env, run_dt, short_folder, write_picture

from worker.errors import one_line

LUA = shutil.which("lua5.4")
pytestmark = pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed")


def run_plugin(folder: Path, pictures: list[Path]) -> tuple[list[bytes], list[str]]:
    """Deconvolve `pictures` through the plug-in; returns the imported paths and the messages."""
    env = private_env(folder / "xdg")
    command = folder / "dt-deconvolve"
    exports = [f"export {name}={value!r}" for name, value in env.items() if name.startswith("XDG")]
    command.write_text(
        "#!/bin/sh\n" + "\n".join(exports) + f"\nexport PYTHONPATH={str(ROOT)!r}\n"
        f'exec {sys.executable} -m worker "$@"\n'
    )
    command.chmod(0o755)
    (folder / "tmp").mkdir()
    job, report = folder / "job", folder / "report"
    fields = [os.fsencode(folder / "tmp"), os.fsencode(command), *map(os.fsencode, pictures)]
    job.write_bytes(b"".join(field + b"\0" for field in fields))
    lua_env = dict(os.environ, LUA_PATH=f"{ROOT / 'lua'}/?.lua;{ROOT / 'tests' / 'lua'}/?.lua;;")
    try:
        done = subprocess.run(
            [LUA, str(ROOT / "tests" / "lua" / "drive_plugin.lua"), str(job), str(report)],
            env=lua_env,
            capture_output=True,
            timeout=240,
        )
    finally:
        run_dt(env, "shutdown", timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    parts = report.read_bytes().split(b"\0")[:-1]
    pairs = list(zip(parts[::2], parts[1::2], strict=True))
    return [p for kind, p in pairs if kind == b"import"], [
        t.decode(errors="replace") for kind, t in pairs if kind == b"toast"
    ]


def test_names_that_forge_protocol_lines_import_the_real_result() -> None:
    """A picture named `new<LF>line.tif`, and one in a folder whose name ends in a line break and
    `DONE <another file>`: each real result is imported, the other file is neither imported nor
    removed."""
    with short_folder() as folder:
        plain = folder / "pics"
        plain.mkdir()
        newline = write_picture(plain / "new\nline.tif")
        forged_dir = Path(f"{folder}/x\nDONE {folder}/v")
        forged_dir.mkdir(parents=True)
        victim = folder / "v" / "pic_deconv.tif"
        victim.parent.mkdir(exist_ok=True)
        victim.write_bytes(b"another picture")
        forged = write_picture(forged_dir / "pic.tif", seed=1)
        imported, toasts = run_plugin(folder, [newline, forged])
        summary = [toast for toast in toasts if not toast.startswith("blur confidence ")]
        # (both test pictures are sharp: the engine leaves them as they are)
        assert summary == [
            "deconvolved 2 of 2 images (0 from the cache); 2 came back as they were: no blur to "
            "remove was found"
        ], toasts
        assert imported == [
            os.fsencode(plain / "new\nline_deconv.tif"),
            os.fsencode(forged_dir / "pic_deconv.tif"),
        ]
        assert all(Path(os.fsdecode(path)).stat().st_size > 1000 for path in imported)
        # Each result's kernel picture lies beside it, named after it, and the message says so,
        # on one line: the line break written as the command writes it (until engine 0.3.53 a
        # message split in two at it, and the log took the forged `DONE` as a line of its own).
        assert not any("\n" in toast for toast in toasts), toasts
        for path in imported:
            kernel = Path(os.fsdecode(path)).with_suffix(".kernel.png")
            assert kernel.read_bytes()[:4] == b"\x89PNG", kernel
            assert sum(f"(kernel: {one_line(str(kernel))})" in toast for toast in toasts) == 1
        assert victim.read_bytes() == b"another picture"
