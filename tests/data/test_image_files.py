"""Image files on disk: pixel modes, extensions and the decoded-image cache (lit_kd/data/image_files.py)."""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_kd.data import CIFAR10DataModule, CorruptDatasetError
from lit_kd.data import image_files as image_files_module
from lit_kd.data.image_files import decode_images, load_images_cached

#: 16-bit samples and their 8-bit values worked out by hand (value >> 8, so 65535 -> 255, never clamped to 255).
SIXTEEN_BIT = [0, 255, 256, 4369, 32767, 32768, 65280, 65535]
EIGHT_BIT = [0, 0, 1, 17, 127, 128, 255, 255]


def gradient(values: list[int], dtype: type, size: int = 32) -> np.ndarray:
    """A ``size x size`` image whose columns cycle through ``values`` (the same on every row)."""
    row = np.array(values * (size // len(values)), dtype=dtype)
    return np.tile(row, (size, 1))


def expected_rgb(values: list[int], size: int = 32) -> torch.Tensor:
    """The ``[3, size, size]`` RGB tensor of the gray gradient ``values``."""
    return torch.from_numpy(gradient(values, np.uint8, size)).expand(3, size, size)


def write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG written byte by byte (colour type 0 gray for ``[H, W]``, 2 RGB for ``[H, W, 3]``)."""
    height, width = samples.shape[:2]
    colour_type = 0 if samples.ndim == 2 else 2
    raw = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------ pixel modes
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grayscale_is_scaled_by_its_range(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(gradient(SIXTEEN_BIT, np.uint16)).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    assert torch.equal(decode_images([path], (32, 32))[0], expected_rgb(EIGHT_BIT))


def test_big_endian_sixteen_bit_grayscale_is_scaled_by_its_range(tmp_path: Path) -> None:
    path = tmp_path / "gray16b.tif"
    samples = gradient(SIXTEEN_BIT, np.uint16)
    Image.frombytes("I;16B", (32, 32), samples.astype(">u2").tobytes()).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16B"
    assert torch.equal(decode_images([path], (32, 32))[0], expected_rgb(EIGHT_BIT))


def test_sixteen_bit_rgb_png_keeps_the_high_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    gray = gradient(SIXTEEN_BIT, np.uint16)
    write_png16(path, np.stack([gray, gray[:, ::-1], np.full_like(gray, 0x80FF)], axis=-1))
    decoded = decode_images([path], (32, 32))[0]
    assert torch.equal(decoded[0], expected_rgb(EIGHT_BIT)[0])
    assert torch.equal(decoded[1], expected_rgb(EIGHT_BIT)[0].flip(-1))
    assert torch.equal(decoded[2], torch.full((32, 32), 0x80, dtype=torch.uint8))


def test_png_mode_i_is_sixteen_bit_and_other_mode_i_is_refused() -> None:
    """Older Pillow opens 16-bit gray PNGs as mode "I"; a 32-bit integer TIFF has no known range."""
    image = Image.frombytes("I", (32, 32), gradient(SIXTEEN_BIT, np.int32).tobytes())
    image.format = "PNG"
    assert np.array_equal(
        np.asarray(image_files_module._to_rgb(image, Path("x.png")))[..., 0], gradient(EIGHT_BIT, np.uint8)
    )
    image.format = "TIFF"
    with pytest.raises(CorruptDatasetError, match=r"x.tif has pixel mode 'I'"):
        image_files_module._to_rgb(image, Path("x.tif"))


def test_predicting_on_a_sixteen_bit_png_sees_the_same_image_as_on_its_eight_bit_copy(tmp_path: Path) -> None:
    folder = tmp_path / "predict"
    folder.mkdir()
    Image.fromarray(gradient(SIXTEEN_BIT, np.uint16)).save(folder / "a_gray16.png")
    Image.fromarray(gradient(EIGHT_BIT, np.uint8)).save(folder / "b_gray8.png")
    Image.fromarray(gradient(SIXTEEN_BIT, np.uint16, size=40)).save(folder / "c_gray16_resized.png")
    Image.fromarray(gradient(EIGHT_BIT, np.uint8, size=40)).save(folder / "d_gray8_resized.png")
    dm = CIFAR10DataModule(tmp_path / "no-data", predict_files=folder, use_cache=False)
    dm.setup("predict")
    images = dm.predict_set.images
    assert [Path(name).name for name in dm.predict_names][:2] == ["a_gray16.png", "b_gray8.png"]
    assert torch.equal(images[0], expected_rgb(EIGHT_BIT))
    assert torch.equal(images[0], images[1])
    assert torch.equal(images[2], images[3])


def palette_image() -> Image.Image:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 10, 20, 30])
    return image


@pytest.mark.parametrize(
    ("image", "suffix", "rgb"),
    [
        (Image.new("1", (32, 32), 1), ".png", (255, 255, 255)),
        (Image.new("L", (32, 32), 77), ".png", (77, 77, 77)),
        (palette_image(), ".png", (10, 20, 30)),
        (palette_image(), ".bmp", (10, 20, 30)),
        (Image.new("LA", (32, 32), (100, 7)), ".png", (100, 100, 100)),
        (Image.new("RGBA", (32, 32), (10, 20, 30, 0)), ".png", (10, 20, 30)),  # alpha dropped, as ImageFolder does
        (Image.new("CMYK", (32, 32), (255, 0, 0, 0)), ".tif", (0, 255, 255)),  # full cyan
        (Image.new("CMYK", (32, 32), (0, 0, 0, 0)), ".jpg", (255, 255, 255)),  # no ink
    ],
    ids=["1", "L", "P", "P-bmp", "LA", "RGBA", "CMYK-tif", "CMYK-jpg"],
)
def test_eight_bit_modes_decode_to_their_rgb_values(
    tmp_path: Path, image: Image.Image, suffix: str, rgb: tuple
) -> None:
    path = tmp_path / f"image{suffix}"
    image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == image.mode
    decoded = decode_images([path], (32, 32))[0]
    assert torch.equal(decoded, torch.tensor(rgb, dtype=torch.uint8)[:, None, None].expand(3, 32, 32))


@pytest.mark.parametrize("mode", ["F", "I"])
def test_modes_without_an_exact_eight_bit_form_are_refused(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"wide-{mode}.tif"
    samples = gradient(SIXTEEN_BIT, np.float32 if mode == "F" else np.int32)
    Image.frombytes(mode, (32, 32), samples.tobytes()).save(path)
    with pytest.raises(CorruptDatasetError, match=rf"wide-{mode}.tif has pixel mode '{mode}'"):
        decode_images([path], (32, 32))


# ------------------------------------------------------------------------------------------ extensions
def test_bmp_webp_and_tiff_class_images_are_read_and_other_files_named(cifar_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    cat = data / "cifar10" / "train" / "cat"
    extra = {
        ".bmp": torch.full((3, 32, 32), 11, dtype=torch.uint8),
        ".webp": torch.full((3, 32, 32), 12, dtype=torch.uint8),
        ".tiff": torch.full((3, 32, 32), 13, dtype=torch.uint8),
    }
    for suffix, pixels in extra.items():
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(cat / f"extra{suffix}", lossless=True)
    (cat / "notes.txt").write_text("not an image")
    (cat / "logo.svg").write_text("<svg/>")
    with pytest.warns(
        UserWarning, match=r"skipped 2 file\(s\) that are not images \(e.g. cat/logo.svg, cat/notes.txt\)"
    ):
        dm = CIFAR10DataModule(data, cache_dir=tmp_path / "cache")
        dm.setup("fit")
    assert len(dm.train_set.targets) == 83
    cats = dm.train_set.images[dm.train_set.targets == 3]
    for pixels in extra.values():
        assert any(torch.equal(image, pixels) for image in cats)


def test_class_folders_with_only_images_load_without_warnings(cifar_folder: Path, tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CIFAR10DataModule(cifar_folder, cache_dir=tmp_path / "cache").setup("fit")


def test_predict_folder_reads_bmp_webp_tiff_and_names_skipped_files(tmp_path: Path) -> None:
    folder = tmp_path / "predict"
    (folder / "sub").mkdir(parents=True)
    for index, name in enumerate(["a.bmp", "b.webp", "c.png", "sub/d.tif"]):
        Image.new("RGB", (32, 32), (index, 0, 0)).save(folder / name, lossless=True)
    (folder / "readme.md").write_text("these are my photos")
    dm = CIFAR10DataModule(tmp_path / "no-data", predict_files=folder, use_cache=False)
    with pytest.warns(UserWarning, match=r"predict: skipped 1 file\(s\) that are not images \(e.g. readme.md\)"):
        dm.setup("predict")
    assert [Path(name).name for name in dm.predict_names] == ["a.bmp", "b.webp", "c.png", "d.tif"]
    assert dm.predict_set.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ cache
def unwritable_cache_warnings(record: pytest.WarningsRecorder) -> list[str]:
    return [str(warning.message) for warning in record if "cannot be written" in str(warning.message)]


@pytest.mark.parametrize("blocked", ["parent_is_a_file", "folder_is_a_file"])
def test_unwritable_cache_folder_warns_once_and_decodes(cifar_folder: Path, tmp_path: Path, blocked: str) -> None:
    """A regular file where the folder (or its parent) should be stops root as well as other users."""
    in_the_way = tmp_path / "in-the-way"
    in_the_way.write_text("a file")
    cache = in_the_way / "cache" if blocked == "parent_is_a_file" else in_the_way
    with pytest.warns(UserWarning) as record:
        dm = CIFAR10DataModule(cifar_folder, cache_dir=cache)
        dm.setup("fit")
    (message,) = unwritable_cache_warnings(record)  # once for both splits
    assert str(cache) in message and "cache_dir" in message and "LIT_KD_CACHE" in message
    uncached = CIFAR10DataModule(cifar_folder, use_cache=False)
    uncached.setup("fit")
    assert torch.equal(dm.train_set.images, uncached.train_set.images)
    assert in_the_way.read_text() == "a file"


def test_permission_denied_cache_folder_warns_and_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder does to a non-root user, simulated so that it also holds for root."""
    path = tmp_path / "image.png"
    Image.fromarray(gradient(EIGHT_BIT, np.uint8)).save(path)

    def permission_denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache"))

    monkeypatch.setattr(image_files_module.tempfile, "NamedTemporaryFile", permission_denied)
    with pytest.warns(UserWarning, match=r"cache folder .*cache cannot be written \(.*Permission denied"):
        images = load_images_cached([path], (32, 32), tmp_path / "cache", "x")
    assert torch.equal(images[0], expected_rgb(EIGHT_BIT))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a 0o500 folder anyway")
def test_read_only_cache_folder_warns_and_decodes(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    Image.fromarray(gradient(EIGHT_BIT, np.uint8)).save(path)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.warns(UserWarning, match=r"cannot be written.*LIT_KD_CACHE"):
            images = load_images_cached([path], (32, 32), cache, "x")
    finally:
        cache.chmod(0o700)
    assert torch.equal(images[0], expected_rgb(EIGHT_BIT))
    assert list(cache.iterdir()) == []


def test_an_interrupted_cache_save_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.png"
    Image.fromarray(gradient(EIGHT_BIT, np.uint8)).save(path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_images_cached([path], (32, 32), tmp_path / "cache", "x")
    assert list((tmp_path / "cache").iterdir()) == []


def test_stale_temporary_files_of_killed_runs_are_removed_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    Image.fromarray(gradient(EIGHT_BIT, np.uint8)).save(path)
    cache = tmp_path / "cache"
    cache.mkdir()
    two_hours_ago = time.time() - 7200
    stale = [cache / "tmpk1ll3d.tmp", cache / "x-0123456789ab.pt.k1ll3d.tmp"]  # names before / after this change
    kept = [cache / "x-0123456789ab.pt.wr1t1ng.tmp", cache / "notes.tmp"]  # a write in progress; not a cache file
    for file in stale + kept:
        file.write_bytes(b"partial")
    for file in [*stale, kept[1]]:
        os.utime(file, (two_hours_ago, two_hours_ago))
    load_images_cached([path], (32, 32), cache, "x")
    assert sorted(file.name for file in cache.iterdir() if file.suffix == ".tmp") == sorted(file.name for file in kept)
    assert len(list(cache.glob("x-*.pt"))) == 1
