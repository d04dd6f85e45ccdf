import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sppnet.proposals import (
    CacheStatus,
    CorruptProposalFileError,
    ProposalCache,
    ProposalCacheWarning,
    ProposalSource,
    SlidingWindows,
    read_proposal_file,
)
from sppnet.proposals.cache import (
    ProposalRecord,
    cache_file_name,
    decode_proposal_file,
    encode_proposal_file,
)


class CountingSource(ProposalSource):
    """Deterministic boxes that depend on the image size and a parameter; counts its calls."""

    name = "counting"

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = scale
        self.calls: list[str] = []

    def params(self):
        return {"scale": self.scale}

    def __call__(self, image, image_id):
        self.calls.append(image_id)
        h, w = image.shape[1:]
        return torch.tensor(
            [[0, 0, w * self.scale, h * self.scale], [1.5, 2.25, w - 1, h], [0, 0, w, h]],
            dtype=torch.float32,
        )


def _image(h=30, w=40):
    return torch.zeros(3, h, w, dtype=torch.uint8)


def test_round_trip_and_hit(tmp_path):
    source = CountingSource()
    cache = ProposalCache(tmp_path, source)
    boxes = cache(_image(), "000005")
    assert source.calls == ["000005"]
    again = cache(_image(), "000005")
    assert source.calls == ["000005"]  # read back, not recomputed
    assert torch.equal(again, boxes) and again.dtype == torch.float32
    record = read_proposal_file(tmp_path / "000005.safetensors")
    assert record.image_id == "000005" and record.image_size == (30, 40)
    assert record.source == "counting" and record.params == {"scale": 0.5}
    assert torch.equal(record.boxes, boxes)
    assert json.loads((tmp_path / "proposals.json").read_text()) == {
        "params": {"scale": 0.5},
        "source": "counting",
    }


def test_empty_proposals_round_trip(tmp_path):
    record = ProposalRecord(torch.zeros(0, 4), "a", (5, 5), "x", {})
    decoded = decode_proposal_file(encode_proposal_file(record))
    assert decoded.boxes.shape == (0, 4)


def _stored(tmp_path):
    cache = ProposalCache(tmp_path, CountingSource())
    cache(_image(), "img")
    path = tmp_path / "img.safetensors"
    return cache, path, path.read_bytes()


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -20, -1])
def test_truncated_file_is_detected_reported_and_recomputed(tmp_path, keep):
    cache, path, data = _stored(tmp_path)
    path.write_bytes(data[:keep])
    with pytest.raises(CorruptProposalFileError, match=r"img\.safetensors"):
        read_proposal_file(path)
    status, boxes, reason = cache.lookup("img")
    assert status is CacheStatus.CORRUPT and boxes is None and "img.safetensors" in reason
    with pytest.warns(ProposalCacheWarning, match=r"img\.safetensors.*corrupt"):
        cache(_image(), "img")
    assert cache.source.calls == ["img", "img"]
    assert torch.equal(read_proposal_file(path).boxes, decode_proposal_file(data).boxes)


def test_every_flipped_byte_is_detected(tmp_path):
    _, _, data = _stored(tmp_path)
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        try:
            record = decode_proposal_file(bytes(damaged), "damaged")
        except CorruptProposalFileError:
            continue
        # The only undetectable flips are in JSON whitespace padding safetensors adds, which
        # carries no information: the record must then be exactly the original.
        original = decode_proposal_file(data)
        assert torch.equal(record.boxes, original.boxes) and record.params == original.params
        assert chr(data[index]) == " " and chr(damaged[index]) == "!", index


def test_stale_params_and_image_size(tmp_path):
    ProposalCache(tmp_path, CountingSource(0.5))(_image(), "img")
    other = ProposalCache(tmp_path, CountingSource(0.25))
    status, _, reason = other.lookup("img")
    assert status is CacheStatus.STALE and "0.5" in reason and "0.25" in reason
    with pytest.warns(ProposalCacheWarning, match="stale"):
        boxes = other(_image(), "img")
    assert boxes[0].tolist() == [0, 0, 10, 7.5]
    assert other.lookup("img")[0] is CacheStatus.HIT
    # Same settings, but the image now has another size.
    status, _, reason = other.lookup("img", image_size=(31, 40))
    assert status is CacheStatus.STALE and "40x30" in reason


def test_file_of_another_image_is_corrupt(tmp_path):
    cache, _, data = _stored(tmp_path)
    (tmp_path / "other.safetensors").write_bytes(data)
    status, _, reason = cache.lookup("other")
    assert status is CacheStatus.CORRUPT and "'img'" in reason


def test_other_format_version_is_stale(tmp_path, monkeypatch):
    import sppnet.proposals.cache as cache_module

    cache, _, _ = _stored(tmp_path)
    monkeypatch.setattr(cache_module, "VERSION", "2")
    status, _, reason = cache.lookup("img")
    assert status is CacheStatus.STALE and "version" in reason


def test_from_directory_reopens_with_the_recorded_source(tmp_path):
    windows = SlidingWindows(sizes=(8, 16), aspect_ratios=(1.0,))
    first = ProposalCache(tmp_path, windows)
    boxes = first(_image(), "a")
    reopened = ProposalCache.from_directory(tmp_path)
    assert isinstance(reopened.source, SlidingWindows)
    assert reopened.params() == windows.params()
    assert reopened.lookup("a")[0] is CacheStatus.HIT
    assert torch.equal(reopened(_image(), "a"), boxes)
    with pytest.raises(FileNotFoundError, match="not a proposal cache"):
        ProposalCache.from_directory(tmp_path / "nothing")


def test_file_names_are_safe_and_distinct():
    assert cache_file_name("000005") == "000005.safetensors"
    assert cache_file_name("2008_000001") == "2008_000001.safetensors"
    names = {cache_file_name(i) for i in ["a/b", "a%2Fb", "..", ".", "a b", "a" * 300, "b" * 300]}
    assert len(names) == 7
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) < 255
    with pytest.raises(ValueError):
        cache_file_name("")


def test_invalid_boxes_are_refused_before_writing(tmp_path):
    class Bad(CountingSource):
        def __call__(self, image, image_id):
            return torch.tensor([[0.0, 0.0, 100.0, 10.0]])  # wider than the 40-pixel image

    cache = ProposalCache(tmp_path, Bad())
    with pytest.raises(ValueError, match="inside the 40x30 image"):
        cache(_image(), "img")
    assert not (tmp_path / "img.safetensors").exists()


@given(
    boxes=st.lists(
        st.tuples(st.floats(0, 50), st.floats(0, 50), st.floats(0.01, 50), st.floats(0.01, 50)),
        max_size=20,
    ),
    params=st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.none())
    ),
    image_id=st.text(min_size=1, max_size=12),
)
def test_encode_decode_round_trip(boxes, params, image_id):
    tensor = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes]).reshape(-1, 4).float()
    tensor = tensor.clamp(max=100.0)
    tensor = tensor[(tensor[:, 2:] > tensor[:, :2]).all(1)]
    record = ProposalRecord(tensor, image_id, (100, 100), "src", params)
    decoded = decode_proposal_file(encode_proposal_file(record))
    assert torch.equal(decoded.boxes, tensor)
    assert (decoded.image_id, decoded.image_size, decoded.source) == (image_id, (100, 100), "src")
    assert decoded.params == params
