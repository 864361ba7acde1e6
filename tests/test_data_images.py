"""core.data.images: every common image flavour opens as 8-bit L/RGB; every bad file is an InputError."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.data.images import check_image, image_size, npz_ref, open_image, to_standard_mode
from core.errors import InputError
from tests._data_files import truncate, write_image


def test_greyscale_png_stays_l(tmp_path):
    p = write_image(tmp_path / "g.png", size=(30, 20), mode="L")
    im = open_image(p)
    assert im.mode == "L" and im.size == (30, 20)
    assert np.array_equal(np.asarray(im), np.asarray(Image.open(p)))


def test_16bit_png_full_range_scales_to_8bit(tmp_path):
    arr = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    out = np.asarray(open_image(p))
    assert open_image(p).mode == "L"
    assert out.tolist() == [[0, 1, 128, 255]]


def test_12bit_data_in_16bit_png_uses_its_bit_depth(tmp_path):
    # A 12-bit detector image must not come out near-black (a blind /257 would give max 16).
    arr = np.array([[0, 2048, 4095]], dtype=np.uint16)
    p = tmp_path / "twelve.png"
    Image.fromarray(arr).save(p)
    assert np.asarray(open_image(p)).tolist() == [[0, 128, 255]]


def test_float_image_is_min_max_stretched():
    im = Image.fromarray(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_standard_mode(im)).tolist() == [[0, 128, 255]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpeg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    im = open_image(p)
    r, g, b = im.getpixel((8, 8))
    assert im.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :20] = 255  # left half white
    p = tmp_path / "rotated.jpeg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(p, exif=exif.tobytes(), quality=95)
    im = open_image(p)
    assert im.size == (20, 40)  # width and height swapped
    out = np.asarray(im)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # the white left half is now on top
    assert image_size(p) == (40, 20)  # header size is the stored one


@pytest.mark.parametrize("mode,fmt,suffix", [("RGB", "TIFF", ".tif"), ("L", "TIFF", ".tiff"), ("RGB", "BMP", ".bmp"),
                                             ("RGB", "PNG", ".png"), ("L", "JPEG", ".jpg")])
def test_common_formats_open(tmp_path, mode, fmt, suffix):
    p = write_image(tmp_path / f"x{suffix}", size=(20, 10), mode=mode, fmt=fmt)
    assert check_image(p) == (20, 10)
    im = open_image(p)
    assert im.mode == mode and im.size == (20, 10)


def test_16bit_tiff_opens(tmp_path):
    p = tmp_path / "deep.tif"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(p)
    assert np.asarray(open_image(p)).tolist() == [[0, 255]]


def test_alpha_and_palette_modes(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))  # fully transparent white
    rgba.putpixel((0, 0), (10, 200, 30, 255))
    rgba.save(tmp_path / "a.png")
    im = open_image(tmp_path / "a.png")
    assert im.mode == "RGB" and im.getpixel((1, 1)) == (0, 0, 0) and im.getpixel((0, 0)) == (10, 200, 30)
    Image.new("LA", (4, 4), (200, 255)).save(tmp_path / "la.png")
    assert open_image(tmp_path / "la.png").mode == "L"
    Image.new("P", (4, 4), 3).save(tmp_path / "p.png")
    assert open_image(tmp_path / "p.png").mode == "RGB"
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.png")
    bw = open_image(tmp_path / "bw.png")
    assert bw.mode == "L" and bw.getpixel((0, 0)) == 255


def test_truncated_jpeg_found_by_cheap_check(tmp_path):
    p = truncate(write_image(tmp_path / "cut.jpeg", size=(64, 64)), 0.6)
    with pytest.raises(InputError, match=r"cut\.jpeg.*truncated"):
        check_image(p)
    with pytest.raises(InputError, match=r"cut\.jpeg"):
        open_image(p)


def test_truncated_png_and_tiff(tmp_path):
    png = truncate(write_image(tmp_path / "cut.png", size=(64, 64)), 0.5)
    with pytest.raises(InputError, match=r"cut\.png"):
        check_image(png)
    tif = truncate(write_image(tmp_path / "cut.tif", size=(64, 64), fmt="TIFF"), 0.5)
    with pytest.raises(InputError, match=r"cut\.tif.*truncated"):
        check_image(tif)


def test_png_with_corrupt_crc(tmp_path):
    p = write_image(tmp_path / "crc.png", size=(32, 32))
    data = bytearray(p.read_bytes())
    at = data.index(b"IDAT") + 8
    data[at] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"crc\.png"):
        check_image(p)


def test_non_image_with_jpeg_name(tmp_path):
    p = tmp_path / "notes.jpeg"
    p.write_text("this is not a picture")
    with pytest.raises(InputError, match=r"notes\.jpeg.*not an image"):
        check_image(p)
    with pytest.raises(InputError, match=r"notes\.jpeg"):
        open_image(p)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        check_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="not found"):
        check_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not found"):
        open_image(tmp_path / "nope.png")


def test_pixel_limit(tmp_path):
    p = write_image(tmp_path / "big.png", size=(100, 80))
    with pytest.raises(InputError, match=r"big\.png.*8,000 pixels.*limit of 5,000"):
        check_image(p, max_pixels=5000)
    with pytest.raises(InputError, match="limit"):
        open_image(p, max_pixels=5000)
    assert open_image(p, max_pixels=8000).size == (100, 80)


def _png_with_claimed_size(path, width, height):
    """A valid tiny PNG whose header claims width x height (a decompression bomb's calling card)."""
    data = bytearray(write_image(path, size=(4, 4)).read_bytes())
    start = data.index(b"IHDR")
    data[start + 4:start + 12] = struct.pack(">II", width, height)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_an_input_error(tmp_path):
    p = _png_with_claimed_size(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(InputError, match=r"bomb\.png.*(limit|too large)"):
        check_image(p)
    # Even when our own limit is lifted, PIL's guard is reported the same way, not as a crash.
    with pytest.raises(InputError, match=r"bomb\.png: image is 30000x30000 = 900,000,000 pixels, above the limit of "
                                         r"178,956,970 \(decompression-bomb guard\)"):
        open_image(p, max_pixels=10**12)


def test_npz_reference(tmp_path):
    images = np.arange(2 * 5 * 6, dtype=np.uint8).reshape(2, 5, 6)
    np.savez(tmp_path / "m.npz", train_images=images, train_labels=np.zeros((2, 1)))
    ref = npz_ref(tmp_path / "m.npz", "train", 1)
    im = open_image(ref)
    assert im.mode == "L" and np.array_equal(np.asarray(im), images[1])
    assert check_image(ref) == (6, 5)
    with pytest.raises(InputError, match="index 7"):
        open_image(npz_ref(tmp_path / "m.npz", "train", 7))
    with pytest.raises(InputError, match="test_images"):
        open_image(npz_ref(tmp_path / "m.npz", "test", 0))
