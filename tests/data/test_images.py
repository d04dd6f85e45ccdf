import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    decode_image,
    image_from_array,
    read_image,
    read_image_size,
)


def _rgb(h: int = 12, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(tmp_path, name, image: Image.Image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring ``width x height`` RGB, then one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# --- conversions ---------------------------------------------------------------------------------


def test_rgb_png_exact(tmp_path):
    pixels = _rgb()
    out = read_image(_save(tmp_path, "a.png", Image.fromarray(pixels)))
    assert out.dtype == torch.uint8 and out.shape == (3, 12, 20)
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1))


def test_jpeg_decodes_close_to_source(tmp_path):
    pixels = np.full((16, 24, 3), (200, 40, 90), dtype=np.uint8)
    out = read_image(_save(tmp_path, "a.jpg", Image.fromarray(pixels), quality=95))
    assert out.shape == (3, 16, 24)
    assert (out.int() - torch.tensor([200, 40, 90]).view(3, 1, 1)).abs().max() <= 3


def test_grayscale_replicated(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    out = read_image(_save(tmp_path, "g.png", Image.fromarray(grey, mode="L")))
    assert out.shape == (3, 6, 10)
    for c in range(3):
        assert torch.equal(out[c], torch.from_numpy(grey))


def test_bilevel_to_0_255(tmp_path):
    bits = np.zeros((4, 8), dtype=bool)
    bits[1, 2] = True
    out = read_image(_save(tmp_path, "b.png", Image.fromarray(bits).convert("1")))
    assert out[:, 1, 2].tolist() == [255, 255, 255]
    assert int(out.sum()) == 3 * 255


def test_rgba_alpha_dropped_colours_kept(tmp_path):
    rgba = np.zeros((5, 7, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 10, 20, 30
    rgba[..., 3] = 0  # fully transparent: the stored colours are still returned
    out = read_image(_save(tmp_path, "t.png", Image.fromarray(rgba, mode="RGBA")))
    assert out.shape == (3, 5, 7)
    assert out[:, 0, 0].tolist() == [10, 20, 30]


def test_grey_alpha(tmp_path):
    la = np.stack([np.full((3, 3), 77, np.uint8), np.full((3, 3), 5, np.uint8)], axis=2)
    out = read_image(_save(tmp_path, "la.png", Image.fromarray(la, mode="LA")))
    assert out.unique().tolist() == [77]


def test_palette_and_palette_with_transparency(tmp_path):
    image = Image.new("P", (6, 4))
    image.putpalette([0, 0, 0, 250, 10, 5, 3, 200, 100] + [0] * (256 * 3 - 9))
    image.paste(1, (0, 0, 3, 4))
    image.paste(2, (3, 0, 6, 4))
    out = read_image(_save(tmp_path, "p.png", image))
    assert out[:, 0, 0].tolist() == [250, 10, 5]
    assert out[:, 0, 5].tolist() == [3, 200, 100]
    out_t = read_image(_save(tmp_path, "pt.png", image, transparency=1))
    assert torch.equal(out_t, out)
    out_gif = read_image(_save(tmp_path, "p.gif", image))
    assert torch.equal(out_gif, out)


def test_16bit_grey_scaled_with_rounding(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    image = Image.fromarray(values)
    path = _save(tmp_path, "d.png", image)
    with Image.open(path) as reopened:
        assert reopened.mode.startswith("I")  # really stored as 16-bit
    out = read_image(path)
    assert out[0, 0].tolist() == [0, 100, 255, 0]
    assert torch.equal(out[0], out[2])


def test_cmyk_tiff_converted(tmp_path):
    cmyk = np.zeros((2, 3, 4), dtype=np.uint8)
    cmyk[0, 1] = (0, 0, 0, 255)  # black ink
    cmyk[0, 2] = (255, 0, 0, 0)  # cyan
    out = read_image(_save(tmp_path, "c.tif", Image.fromarray(cmyk, mode="CMYK")))
    assert out[:, 0, 0].tolist() == [255, 255, 255]
    assert out[:, 0, 1].tolist() == [0, 0, 0]
    assert out[:, 0, 2].tolist() == [0, 255, 255]


def test_cmyk_jpeg_reads(tmp_path):
    cmyk = np.zeros((8, 8, 4), dtype=np.uint8)
    out = read_image(_save(tmp_path, "c.jpg", Image.fromarray(cmyk, mode="CMYK"), quality=95))
    assert out.shape == (3, 8, 8) and int(out.min()) >= 250


def test_float_tiff_rejected(tmp_path):
    path = _save(tmp_path, "f.tif", Image.fromarray(np.zeros((3, 3), np.float32), mode="F"))
    with pytest.raises(ImageReadError, match=r"f\.tif.*mode F"):
        read_image(path)


# --- EXIF orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_exif_orientation_6_rotates_clockwise(tmp_path, fmt):
    # Stored 40 wide, 20 high, a white block in the stored top-left corner; orientation 6 means
    # "rotate 90 degrees clockwise to display", which moves that corner to the top-right.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, f"r.{fmt}", Image.fromarray(pixels), exif=exif.tobytes())
    out = read_image(path)
    assert out.shape == (3, 40, 20)
    assert out[:, 2, 17].min() > 200  # top-right of the displayed image
    assert out[:, 2, 2].max() < 50
    assert read_image_size(path) == (40, 20)
    raw = read_image(path, apply_exif=False)
    assert raw.shape == (3, 20, 40) and raw[:, 2, 2].min() > 200
    assert read_image_size(path, apply_exif=False) == (20, 40)


def test_exif_orientation_3_rotates_180(tmp_path):
    pixels = _rgb(6, 9, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 3
    out = read_image(_save(tmp_path, "r.png", Image.fromarray(pixels), exif=exif.tobytes()))
    assert torch.equal(out, torch.from_numpy(pixels[::-1, ::-1].copy()).permute(2, 0, 1))


# --- failures ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: file is empty"):
        read_image(path)
    with pytest.raises(ImageReadError, match="empty"):
        decode_image(b"")


def test_text_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not an image.*these are my") as info:
        read_image(path)
    assert isinstance(info.value, ValueError)


def test_unknown_format_not_in_allowlist(tmp_path):
    path = _save(tmp_path, "x.tga", Image.fromarray(_rgb()), format="TGA")
    with pytest.raises(ImageReadError, match=r"x\.tga: not an image in a supported format"):
        read_image(path)


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_truncated(tmp_path, fmt):
    pixels = _rgb(64, 64, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG" if fmt == "jpg" else "PNG")
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=rf"cut\.{fmt}: cannot decode.*truncated"):
        read_image(path)
    # The header is intact, so the cheap size query still answers.
    assert read_image_size(path) == (64, 64)


def test_truncated_in_header(tmp_path):
    path = tmp_path / "h.png"
    path.write_bytes(_png_header(10, 10)[:20])
    with pytest.raises(ImageReadError, match=r"h\.png"):
        read_image(path)


def test_bomb_over_our_limit_fails_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(12_000, 10_000))  # 120 Mpx declared, a few bytes of data
    with pytest.raises(ImageReadError, match=r"big\.png: declared size 12000x10000.*limit"):
        read_image(path)
    with pytest.raises(ImageReadError, match="limit"):
        read_image_size(path)


def test_bomb_over_pillow_limit(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ImageReadError, match=r"huge\.png: declared size"):
        read_image(path)


def test_max_pixels_configurable(tmp_path):
    path = _save(tmp_path, "s.png", Image.fromarray(_rgb(10, 10)))
    assert read_image(path, max_pixels=100).shape == (3, 10, 10)
    with pytest.raises(ImageReadError, match="100 pixels exceeds the limit of 99"):
        read_image(path, max_pixels=99)
    assert DEFAULT_MAX_PIXELS == 100_000_000


# --- in-memory -----------------------------------------------------------------------------------


def test_decode_image_bytes():
    pixels = _rgb()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    out = decode_image(buffer.getvalue())
    assert torch.equal(out, torch.from_numpy(pixels).permute(2, 0, 1))
    with pytest.raises(ImageReadError, match=r"upload\.bin: not an image"):
        decode_image(b"garbage!" * 4, name="upload.bin")


def test_image_from_array_variants():
    pixels = _rgb(4, 5)
    expected = torch.from_numpy(pixels).permute(2, 0, 1)
    assert torch.equal(image_from_array(pixels), expected)
    assert torch.equal(image_from_array(pixels[:, :, ::-1].copy(), channel_order="BGR"), expected)
    rgba = np.concatenate([pixels, np.zeros((4, 5, 1), np.uint8)], axis=2)
    assert torch.equal(image_from_array(rgba), expected)
    grey = image_from_array(np.full((2, 3), 9, np.uint8))
    assert grey.shape == (3, 2, 3) and grey.unique().tolist() == [9]
    assert image_from_array(np.array([[0.0, 1.0]])).flatten().tolist() == [0, 255] * 3
    assert image_from_array(np.array([[65535]], np.uint16)).flatten().tolist() == [255] * 3
    assert image_from_array(np.array([[True]])).flatten().tolist() == [255] * 3


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((2, 2, 2), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((2, 2), np.int64), "dtype"),
        (np.array([[1.5]]), r"\[0, 1\]"),
        (np.array([[np.nan]]), "finite"),
    ],
)
def test_image_from_array_rejects(array, match):
    with pytest.raises(ImageReadError, match=match):
        image_from_array(array)


def test_16bit_rgb_png_keeps_high_byte(tmp_path):
    cv2 = pytest.importorskip("cv2")
    bgr = np.zeros((2, 3, 3), np.uint16)
    bgr[0, 0] = (0, 257 * 10, 65535)  # OpenCV writes BGR: this pixel is R=65535, G=2570, B=0
    bgr[0, 1] = (0x1280, 0, 0)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), bgr)
    out = read_image(path)
    assert out[:, 0, 0].tolist() == [255, 10, 0]
    assert out[:, 0, 1].tolist() == [0, 0, 0x12]
