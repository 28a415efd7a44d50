import pytest

from calls.byteranges import Unsatisfiable, byte_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the file: all of it
        ("bytes=900-5000", (900, 999)),  # past the end: up to the end
        (" bytes = 1 - 2 ", (1, 2)),
        ("bytes=5-1", None),  # invalid: ignored, the whole file
        ("bytes=0-1,5-9", None),  # several ranges: ignored, as the RFC allows
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_one_byte_range_or_the_whole_file(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=2000-3000", "bytes=-0"])
def test_a_range_past_the_end_is_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)
