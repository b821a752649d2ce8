"""Every corpus case, with normalisation on and off, through the front ends' entry point."""

from __future__ import annotations

import pytest

from bot.core.errors import ValidationFailed
from bot.core.models import Capabilities
from bot.core.validation import (
    ImageSource,
    check_image,
    check_metadata,
    inspect_image,
    prepare_images,
)
from tests.image_corpus import CASES, FakeFetcher, FakeHost, ImageCase, Verdict

CAPS = Capabilities(
    name="apixo",
    max_input_images=3,
    aspect_ratios_t2i=["1:1"],
    aspect_ratios_i2i=["1:1"],
    supports_negative_prompt=True,
)
MODES = [pytest.param(True, id="normalize-on"), pytest.param(False, id="normalize-off")]
NAMES = [case.name for case in CASES]


@pytest.fixture(scope="session")
def corpus() -> dict[str, ImageCase]:
    for case in CASES:  # build every file once for the whole session
        case.data()
    return {case.name: case for case in CASES}


def test_corpus_covers_the_ground(corpus: dict[str, ImageCase]) -> None:
    assert len(corpus) >= 30
    for normalize in (True, False):
        verdicts = {case.expect(normalize).verdict for case in CASES}
        assert verdicts == set(Verdict) if normalize else {Verdict.ACCEPTED, Verdict.REJECTED}
    formats = {inspect_image(corpus[name].data()).format for name in ("jpeg", "png", "bmp24")}
    formats |= {inspect_image(corpus[name].data()).format for name in ("webp_lossy", "gif")}
    assert formats | {inspect_image(corpus["tiff"].data()).format} == {
        "JPEG",
        "PNG",
        "BMP",
        "WEBP",
        "GIF",
        "TIFF",
    }
    assert len(corpus["png_10mb_exact"].data()) == 10 * 1024 * 1024
    assert len(corpus["png_10mb_plus_1"].data()) == 10 * 1024 * 1024 + 1


@pytest.mark.parametrize("normalize", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_metadata_stage_refuses_only_what_can_never_work(
    corpus: dict[str, ImageCase], name: str, normalize: bool
) -> None:
    case = corpus[name]
    expect = case.expect(normalize)
    if expect.at_metadata:
        with pytest.raises(ValidationFailed) as caught:
            check_metadata([case.meta(1)], CAPS, normalize)
        assert any(expect.fragment in problem for problem in caught.value.problems)
        assert all(p.startswith(f"image 1 ({case.filename}) ") for p in caught.value.problems)
    else:
        check_metadata([case.meta(1)], CAPS, normalize)  # must not refuse a usable image


def _source(case: ImageCase, kind: str, fetcher: FakeFetcher) -> ImageSource:
    if kind == "local":  # console: bytes from a file, no platform metadata
        return ImageSource.from_bytes(case.data(), case.filename)
    url = f"https://cdn.discordapp.test/attachments/1/{case.filename}"
    fetcher.files[url] = case.data()
    return ImageSource.from_url(url, case.meta(1))


@pytest.mark.parametrize("kind", ["url", "local"])
@pytest.mark.parametrize("normalize", MODES)
@pytest.mark.parametrize("name", NAMES)
async def test_case_through_prepare_images(
    corpus: dict[str, ImageCase], name: str, normalize: bool, kind: str
) -> None:
    case = corpus[name]
    expect = case.expect(normalize)
    fetcher, host = FakeFetcher(), FakeHost()
    source = _source(case, kind, fetcher)

    if expect.verdict is Verdict.REJECTED:
        with pytest.raises(ValidationFailed) as caught:
            await prepare_images([source], CAPS, normalize=normalize, fetch=fetcher, host=host)
        problems = caught.value.problems
        assert any(expect.fragment in problem for problem in problems), problems
        assert all(problem.startswith(f"image 1 ({case.filename}) ") for problem in problems)
        assert host.uploads == []  # nothing is left behind
        if kind == "url" and expect.at_metadata:
            assert fetcher.calls == []  # refused before any download
        return

    prepared = await prepare_images([source], CAPS, normalize=normalize, fetch=fetcher, host=host)
    assert len(prepared.refs) == 1
    ref = prepared.refs[0]
    if kind == "url":
        limit = (50 if normalize else 10) * 1024 * 1024
        assert fetcher.calls == [(source.url, limit)]

    if expect.verdict is Verdict.ACCEPTED:
        assert prepared.notes == []
        info = inspect_image(case.data())
        assert (ref.width, ref.height) == (info.width, info.height)
        if kind == "url":
            assert ref.url == source.url  # the provider fetches the original
            assert host.uploads == []
        else:
            assert [upload.data for upload in host.uploads] == [case.data()]
            assert ref.url == host.uploads[0].url
        return

    # NORMALIZED: told, uploaded, and the upload passes the strict (normalisation off) rules
    assert len(prepared.notes) == 1
    note = prepared.notes[0]
    assert note.startswith(f"image 1 ({case.filename}): ")
    assert expect.fragment in note, note
    assert len(host.uploads) == 1
    upload = host.uploads[0]
    assert ref.url == upload.url
    strict = check_image(upload.data, normalize=False)
    assert not strict.changed
    assert (ref.width, ref.height) == (strict.width, strict.height)
    assert upload.content_type == strict.content_type
    assert upload.filename.endswith("." + strict.extension)
