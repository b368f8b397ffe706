"""Image and input handling of the tasks dialect, without a server: resampling keeps what the format
can hold, limits refuse before work is done, and bad input names the parameter."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from realtime.dialects.tasks import TaskFailed
from realtime.dialects.tasks.images import _inspect, _upscale
from realtime.dialects.tasks.inputs import param_base64, param_choice

pytestmark = [pytest.mark.unit]


def encoded(mode: str, fmt: str, size=(10, 8)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color=(200, 10, 10, 128) if mode == "RGBA" else 5).save(out, format=fmt)
    return out.getvalue()


def test_upscale_keeps_alpha_in_png_and_drops_it_for_jpeg():
    data, content_type, width, height = _upscale(encoded("RGBA", "PNG"), 4, None)
    with Image.open(io.BytesIO(data)) as img:
        assert (img.size, img.mode, content_type) == ((40, 32), "RGBA", "image/png")
        assert img.getpixel((20, 16))[3] == 128
    data, content_type, _, _ = _upscale(encoded("RGBA", "PNG"), 2, "JPEG")
    with Image.open(io.BytesIO(data)) as img:
        assert (img.size, img.mode, content_type) == ((20, 16), "RGB", "image/jpeg")


def test_palette_images_are_upscaled_in_full_colour():
    data, _, _, _ = _upscale(encoded("P", "GIF"), 2, None)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.mode in ("RGB", "RGBA") and img.size == (20, 16)


def test_output_and_input_pixel_limits(settings):
    settings.TASKS_MAX_OUTPUT_PIXELS = 30 * 30
    with pytest.raises(TaskFailed) as refused:
        _upscale(encoded("RGB", "PNG", (20, 20)), 2, None)
    assert (refused.value.code, refused.value.parameter) == ("image_too_large", "upscaleFactor")
    with pytest.raises(TaskFailed) as refused:
        _inspect(encoded("RGB", "PNG", (40, 40)))
    assert refused.value.code == "image_too_large"


def test_base64_inputs_are_checked_before_decoding(settings):
    settings.TASKS_MAX_INPUT_BYTES = 1024
    assert param_base64({"image": "data:image/png;base64," + base64.b64encode(b"abc").decode()}, "image") == b"abc"
    for value, code in ((base64.b64encode(bytes(4096)).decode(), "input_too_large"), ("!!!", "invalid_base64"),
                        ("data:image/png,abc", "invalid_parameter"), (42, "invalid_parameter")):
        with pytest.raises(TaskFailed) as refused:
            param_base64({"image": value}, "image")
        assert (refused.value.code, refused.value.parameter) == (code, "image")


def test_choices_are_case_insensitive_and_exact():
    assert param_choice({"f": "jpg"}, "f", {"JPG": "JPEG"}, "JPG") == "JPEG"
    assert param_choice({}, "n", {2: 2, 4: 4}, 2) == 2
    with pytest.raises(TaskFailed):
        param_choice({"n": True}, "n", {1: 1}, 1)  # True == 1 in Python; not here
