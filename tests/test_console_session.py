"""The console and `wanbot generate` on the real Runtime (SQLite, engine, quotas), driven
in-process with a FakeClock, against the mock provider and the fake provider servers."""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from bot.cli import build_parser
from bot.console.app import serve_console
from bot.console.conversation import ConsoleConversation
from bot.console.generate import generate
from bot.console.inputs import image_sources
from bot.core.clock import FakeClock
from bot.core.errors import ValidationFailed
from bot.core.models import JobState
from bot.core.ports import ImageProvider
from bot.core.providers import EvolinkProvider, MockProvider
from bot.core.quota import DIRECT_SCOPE
from bot.core.tasks import TaskGroup
from bot.core.validation import PreparedImages, prepare_images
from bot.runtime import Runtime
from bot.settings import Settings, load_settings
from tests.fakes.providers import FakeApixo, FakeEvolink, FakeFileServer, Fault
from tests.store_backends import space

T = TypeVar("T")


async def drive(clock: FakeClock, work: Awaitable[T], *, timeout: float = 30.0) -> T:
    """Run `work`, moving the fake clock on whenever it is waiting (a 60 s job takes
    milliseconds); fail after `timeout` real seconds."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not task.done():
        if loop.time() > end:
            task.cancel()
            raise AssertionError("the command did not finish")
        await asyncio.wait([task], timeout=0.01)
        if not task.done():
            await clock.advance(0.5)
    return task.result()


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "wan_provider": "mock",
        "mock_latency_seconds": 4.0,
        "database_path": tmp_path / "db.sqlite3",
        "output_dir": tmp_path / "out",
        "progress_update_seconds": 0.5,
    }
    values.update(overrides)
    return load_settings(env_file=None, **values)


def _factory(clock: FakeClock) -> Callable[[Settings], Runtime]:
    return lambda settings: Runtime(settings, clock=clock)


def _photo(path: Path, size: tuple[int, int] = (512, 400)) -> Path:
    Image.new("RGB", size, (200, 60, 30)).save(path, "PNG")
    return path


def _decoded_sizes(paths: list[Path]) -> list[tuple[int, int]]:
    sizes = []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            sizes.append(image.size)
    return sizes


async def _console(
    settings: Settings, clock: FakeClock, script: str, stop: asyncio.Event | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    code = await drive(
        clock,
        serve_console(settings, stop or asyncio.Event(), io.StringIO(script), out, _factory(clock)),
    )
    return code, out.getvalue()


async def test_console_script_runs_jobs_and_saves_files(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path)
    photo = _photo(tmp_path / "in.png")
    script = (
        "/imagine a lighthouse at dusk --aspect 16:9 -n 2\n"
        f"/edit {photo} make it snowy\n"
        "prompt:a red fox count:1 aspect:3:4\n"
        "/usage\n"
    )
    code, shown = await _console(settings, clock, script)

    assert code == 0
    assert "MOCK MODE" in shown and "DISCORD_TOKEN" in shown and "APIXO_API_KEY" in shown
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 4, shown
    sizes = _decoded_sizes(files)
    shapes = sorted("wide" if w > h else "tall" if w < h else "square" for w, h in sizes)
    assert shapes == ["square", "tall", "wide", "wide"]  # 16:9 x2, the 1:1 edit, the 3:4 fox
    for path in files:
        assert str(path) in shown
    assert "Used: 4\n" in shown and "Limit: 25 per day" in shown
    assert "done, 2 images saved" in shown and "generating" in shown

    # Everything was settled: charged == delivered, nothing left running.
    rt = Runtime(settings, clock=clock)
    async with rt:
        assert await rt.jobs.active_jobs() == []
        jobs = await rt.jobs.user_jobs("console", "local")
        assert sorted(job.delivered for job in jobs) == [1, 1, 2]
        assert all(job.state is JobState.DONE for job in jobs)
        assert (await rt.quotas.usage(space(DIRECT_SCOPE, "console"), "local")).used == 4


async def test_console_quota_admin_and_refusals(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path)
    script = (
        "/quota set 2 day\n"
        "/imagine a cat -n 3\n"
        "/quota grant 1\n"
        "/usage\n"
        "/quota block local testing\n"
        "/imagine a cat\n"
        "/quota unblock\n"
        "/imagine a cat --aspect 5:4\n"
        "/imagine\n"
        "/edit ./missing.png make it red\n"
        "/cancel zzzzzzzzzz\n"
        "/quota budget 10\n"
        "/quota report\n"
        "/jobs\n"
        "/frobnicate\n"
        "/quit\n"
        "/imagine never runs\n"
    )
    code, shown = await _console(settings, clock, script)
    assert code == 0
    # One wording per refusal and answer: the conversation layer's (bot/chat/wording.py).
    assert "you may now make 2 images per day." in shown
    assert "This needs 3 images but you have 2 of 2 left today; more in " in shown
    assert "(`/usage` shows your quota.)" in shown
    assert "Limit: 3 per day (incl. 1 granted)\nUsed: 0\nRemaining: 3" in shown
    assert "You are blocked from generating images here." in shown
    assert "aspect ratio 5:4 is not available" in shown
    assert "the prompt is empty" in shown
    assert "there is no file" in shown
    assert "There is no job `zzzzzzzzzz` here." in shown
    assert "Server budget: 10 images a month." in shown
    assert "Image usage here\nSince " in shown and ": 0 of 10 images, $0.00" in shown
    assert "No jobs yet" in shown
    assert "unknown command /frobnicate" in shown
    assert shown.rstrip().endswith("Bye.")
    # The folder was checked (so it exists), but no image was generated (<job id>_<n>.png).
    assert not list((tmp_path / "out").glob("*_[1-4].*"))


async def test_show_brings_back_the_saved_files(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path)
    _, shown = await _console(settings, clock, "a red fox -n 2\n")
    job_id = _queued_id(shown)
    assert job_id is not None
    _, shown = await _console(settings, clock, f"/show {job_id}\n/jobs\n")
    for number in (1, 2):
        assert f"\n  {tmp_path / 'out' / f'{job_id}_{number}.png'}\n" in shown
    assert f"`{job_id}` · done" in shown  # /jobs


async def test_cancel_from_the_console(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path, mock_latency_seconds=600.0)
    out = io.StringIO()
    stdin_r, stdin_w = _pipe()
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        drive(clock, serve_console(settings, stop, stdin_r, out, _factory(clock)))
    )
    stdin_w.write("/imagine a slow cat\n")
    stdin_w.flush()
    job_id = await _until(lambda: _queued_id(out.getvalue()))
    stdin_w.write(f"/cancel {job_id.upper()}\n")
    stdin_w.flush()
    await _until(lambda: "Cancelled" in out.getvalue() or None)
    stdin_w.close()
    assert await task == 0
    assert f"[{job_id}] Cancelled" in out.getvalue()
    assert "You were not charged" in out.getvalue()


def _pipe() -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    read_fd, write_fd = os.pipe()
    return os.fdopen(read_fd, "r"), os.fdopen(write_fd, "w")


def _queued_id(text: str) -> str | None:
    match = re.search(r"\[(\w+)\] queued:", text)
    return match.group(1) if match else None


async def _until(value: Callable[[], T | None], timeout: float = 20.0) -> T:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (found := value()) is None:
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0)
    return found


async def test_interactive_terminal_prompts_and_ctrl_d_leaves(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = _settings(tmp_path, mock_latency_seconds=600.0)
    controller, terminal = os.openpty()
    stdin = os.fdopen(terminal, "r")
    out = io.StringIO()
    task = asyncio.ensure_future(
        drive(clock, serve_console(settings, asyncio.Event(), stdin, out, _factory(clock)))
    )
    try:
        os.write(controller, b"clear\n")
        await _until(lambda: "\x1b[2J" in out.getvalue() or None)  # on a terminal only
        os.write(controller, b"/imagine a slow cat\n")
        await _until(lambda: _queued_id(out.getvalue()))
        os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
        assert await task == 0
    finally:
        stdin.close()
        os.close(controller)
    shown = out.getvalue()
    assert "\n> " in shown  # the prompt
    assert shown.rstrip().endswith(
        "Bye. 1 job still running: it is saved and finishes the next time wanbot starts."
    )


async def _edit_with_upload_faults(
    tmp_path: Path, clock: FakeClock, script: str, *faults: Fault
) -> tuple[int, str]:
    """`/edit` of a local photo on EvoLink, whose file host answers with `faults`; the
    console's exit code and output. Nothing may be submitted."""
    async with FakeEvolink(api_key="ek-right") as fake:
        fake.script_fault("upload", *faults)
        settings = _settings(
            tmp_path,
            wan_provider="evolink",
            evolink_api_key="ek-right",
            evolink_base_url=fake.base_url,
            evolink_files_url=fake.files_url,
        )
        photo = _photo(tmp_path / "in.png")
        code, shown = await _console(settings, clock, script.format(photo=photo))
        assert fake.requests_for("submit") == []
    return code, shown


async def test_a_failed_image_upload_is_reported_and_the_session_goes_on(
    tmp_path: Path, clock: FakeClock
) -> None:
    code, shown = await _edit_with_upload_faults(
        tmp_path, clock, "/edit {photo} make it red\n/usage\n", *[Fault.http(500)] * 6
    )
    assert code == 0
    assert "could not be uploaded to evolink" in shown and "Nothing was charged" in shown
    assert "Used: 0\n" in shown


@pytest.mark.parametrize(
    ("status", "code"), [(401, "unauthorized"), (402, "insufficient_quota"), (400, "x")]
)
async def test_an_upload_refused_for_the_bots_account_is_not_an_outage(
    status: int, code: str, tmp_path: Path, clock: FakeClock
) -> None:
    # Found in review: a refused key at EvoLink's file host read "please try again later".
    _, shown = await _edit_with_upload_faults(
        tmp_path, clock, "/edit {photo} make it red\n", Fault.http(status, code=code)
    )
    assert "not with your image" in shown and "wanbot doctor" in shown
    assert "try again later" not in shown
    assert shown.lower().count("charged") == 1


async def test_empty_stdin_explains_and_builds_nothing(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path)
    code, shown = await _console(settings, clock, "")
    assert code == 0
    assert "needs a terminal" in shown and "DISCORD_TOKEN" in shown
    assert not settings.database_path.exists()


# --- wanbot generate -------------------------------------------------------------


async def _generate(
    settings: Settings, clock: FakeClock, argv: list[str], stop: asyncio.Event | None = None
) -> tuple[int, str, str]:
    args = build_parser().parse_args(["generate", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = await drive(
        clock, generate(settings, args, stop or asyncio.Event(), out, err, _factory(clock))
    )
    return code, out.getvalue(), err.getvalue()


async def test_generate_against_fake_apixo(tmp_path: Path, clock: FakeClock) -> None:
    async with FakeApixo(api_key="sk-right", complete_after=2) as fake:
        settings = _settings(
            tmp_path,
            wan_provider=None,
            apixo_api_key="sk-right",
            apixo_base_url=fake.base_url,
            download_allowed_hosts="127.0.0.1",
        )
        code, out, err = await _generate(
            settings, clock, ["a cat", "-n", "2", "--aspect", "16:9", "--out", str(tmp_path / "g")]
        )
        assert code == 0, err
        paths = [Path(line) for line in out.splitlines()]
        assert [p.parent for p in paths] == [tmp_path / "g"] * 2
        assert len(_decoded_sizes(paths)) == 2
        [submit] = fake.requests_for("submit")
        assert submit.json["input"]["num_images"] == 2
        assert submit.json["input"]["aspect_ratio"] == "16:9"
        assert "sk-right" not in out + err


async def test_generate_local_file_with_apixo_needs_a_url(tmp_path: Path, clock: FakeClock) -> None:
    async with FakeApixo(api_key="sk-right") as fake:
        settings = _settings(
            tmp_path, wan_provider="apixo", apixo_api_key="sk-right", apixo_base_url=fake.base_url
        )
        photo = _photo(tmp_path / "in.png")
        code, out, err = await _generate(settings, clock, ["edit it", "--image", str(photo)])
        assert code == 2
        assert out == ""
        assert "only fetches input images from public URLs" in err
        assert fake.requests == []  # nothing was sent, nothing spent


async def test_generate_billing_failure_blames_the_provider_account(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with FakeApixo(api_key="sk-right") as fake:
        fake.script_submit_fault(Fault.http(402))
        settings = _settings(
            tmp_path, wan_provider="apixo", apixo_api_key="sk-right", apixo_base_url=fake.base_url
        )
        code, out, err = await _generate(settings, clock, ["a cat", "-n", "3"])
        assert code == 1
        assert out == ""
        assert "account has a problem (billing, key or access)" in err
        assert "`wanbot doctor` shows what to fix" in err
        assert "You were not charged" in err
        rt = Runtime(settings, clock=clock)
        async with rt:
            assert (await rt.quotas.usage(space(DIRECT_SCOPE, "console"), "local")).used == 0


async def test_generate_bad_options_exit_2(tmp_path: Path, clock: FakeClock) -> None:
    code, out, err = await _generate(_settings(tmp_path), clock, ["a cat", "-n", "9"])
    assert (code, out) == (2, "")
    assert "the image count must be 1-4; got 9" in err


async def test_generate_stop_cancels_the_job(tmp_path: Path, clock: FakeClock) -> None:
    settings = _settings(tmp_path, mock_latency_seconds=600.0)
    stop = asyncio.Event()
    args = build_parser().parse_args(["generate", "a slow cat"])
    out, err = io.StringIO(), io.StringIO()
    task = asyncio.ensure_future(
        drive(clock, generate(settings, args, stop, out, err, _factory(clock)))
    )
    await _until(lambda: "sending to the provider" in err.getvalue() or None)
    stop.set()
    assert await task == 1
    assert out.getvalue() == ""
    assert "Cancelled" in err.getvalue()


# --- images from this machine ------------------------------------------------------


async def _prepared(provider: ImageProvider, images: tuple[str, ...]) -> PreparedImages:
    conv = ConsoleConversation(print, provider, None, TaskGroup())
    sources = await image_sources(images, conv)
    return await prepare_images(
        sources, provider.capabilities, normalize=True, fetch=_NoFetch(), host=conv.image_host()
    )


async def test_local_files_become_data_uris_or_evolink_uploads(
    tmp_path: Path, clock: FakeClock
) -> None:
    photo = _photo(tmp_path / "in.png")
    mock = MockProvider(clock, 0)
    prepared = await _prepared(mock, (str(photo),))
    assert prepared.refs[0].url.startswith("data:image/png;base64,")

    import aiohttp
    from pydantic import SecretStr

    async with FakeEvolink() as fake, aiohttp.ClientSession() as http:
        evolink = EvolinkProvider(
            http, SecretStr(fake.api_key), fake.base_url, fake.files_url, clock
        )
        prepared = await _prepared(evolink, (str(photo),))
        assert prepared.refs[0].url.startswith(fake.origin)
        assert len(fake.requests_for("upload")) == 1

    with pytest.raises(ValidationFailed, match="no file"):
        await _prepared(mock, ("nope.png",))


class _NoFetch:
    async def fetch(self, url: str, *, max_bytes: int | None = None) -> Any:
        raise AssertionError("no download expected")


# --- nothing is paid for what was not asked for -----------------------------------


async def test_bare_command_words_and_option_typos_cost_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = _settings(tmp_path)
    script = "help\nclear\n/imagine a dog --aspcet 16:9\nexit\n/imagine never reached\n"
    code, shown = await _console(settings, clock, script)
    assert code == 0
    assert "/imagine PROMPT" in shown  # the help
    assert "unknown option --aspcet; did you mean --aspect?" in shown
    assert shown.rstrip().endswith("Bye.")
    assert "] queued:" not in shown
    rt = Runtime(settings, clock=clock)
    async with rt:
        assert await rt.jobs.user_jobs("console", "local") == []
        assert (await rt.quotas.usage(space(DIRECT_SCOPE, "console"), "local")).used == 0


def _unusable_folders(tmp_path: Path) -> list[Path]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return [Path("/proc/x"), blocker, blocker / "out"]


async def test_generate_checks_the_output_folder_before_anything_is_sent(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with FakeApixo(api_key="sk-right") as fake:
        settings = _settings(
            tmp_path, wan_provider="apixo", apixo_api_key="sk-right", apixo_base_url=fake.base_url
        )
        for folder in _unusable_folders(tmp_path):
            code, out, err = await _generate(settings, clock, ["a garden", "--out", str(folder)])
            assert (code, out) == (2, "")
            assert err.startswith("wanbot: cannot generate: ") and err.count("\n") == 1, err
            assert str(folder) in err and "nothing was sent or charged" in err
            assert "Traceback" not in err
        assert fake.requests == []  # no provider call
    assert not settings.database_path.exists()  # nothing reserved, nothing stored


async def test_console_checks_the_output_folder_at_the_start_and_before_each_job(
    tmp_path: Path, clock: FakeClock
) -> None:
    for folder in _unusable_folders(tmp_path):
        code, shown = await _console(_settings(tmp_path, output_dir=folder), clock, "a cat\n")
        assert code == 2
        assert f"cannot save images in {folder}" in shown or f"{folder} is a file" in shown
        assert "OUTPUT_DIR" in shown and "queued" not in shown
    assert not (tmp_path / "db.sqlite3").exists()

    # A folder that goes away while the console runs: the next job is refused, unpaid.
    out_dir = tmp_path / "out"
    settings = _settings(tmp_path, output_dir=out_dir)
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, "r")
    out = io.StringIO()
    task = asyncio.ensure_future(
        drive(clock, serve_console(settings, asyncio.Event(), stdin, out, _factory(clock)))
    )
    try:
        os.write(write_end, b"/usage\n")
        await _until(lambda: "Your image quota" in out.getvalue() or None)
        out_dir.rmdir()
        out_dir.write_text("now a file")
        os.write(write_end, b"a cat\n")
    finally:
        os.close(write_end)  # the end of the script
    assert await task == 0
    stdin.close()
    assert f"Cannot do that: {out_dir} is a file, not a folder" in out.getvalue()
    assert "queued" not in out.getvalue()


async def test_generate_input_that_cannot_be_fetched_right_now_is_a_failure_not_bad_input(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Exit 2 means "fix your command"; a busy image host is worth retrying as is (exit 1).
    async with FakeApixo(api_key="sk-right") as fake, FakeFileServer() as files:
        url = files.add("busy.png", status=503)
        settings = _settings(
            tmp_path,
            wan_provider="apixo",
            apixo_api_key="sk-right",
            apixo_base_url=fake.base_url,
            download_allowed_hosts="127.0.0.1",
        )
        code, out, err = await _generate(settings, clock, ["edit it", "--image", url])
        assert (code, out) == (1, "")
        assert "could not be fetched right now" in err
        assert fake.requests_for("submit") == []
