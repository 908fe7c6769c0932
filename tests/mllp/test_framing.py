"""The sans-I/O MLLP decoder, with bytes and no sockets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from radsched_engine.mllp.framing import Abandoned, FrameDecoder, Junk, Oversize, encode

MSG = b"MSH|^~\\&|A|B|C|D|20250101||SIU^S12|1|P|2.5\rPID|1||123\r"


def frames(events):
    return [e for e in events if isinstance(e, bytes)]


def test_one_frame_in_one_chunk():
    assert FrameDecoder().feed(encode(MSG)) == [MSG]


def test_several_frames_in_one_chunk():
    data = encode(b"one") + encode(b"two") + encode(b"three")
    assert FrameDecoder().feed(data) == [b"one", b"two", b"three"]


def test_junk_before_and_between_frames_is_reported():
    events = FrameDecoder().feed(b"GET / HTTP/1.0\r\n" + encode(b"one") + b"\n" + encode(b"two"))
    assert frames(events) == [b"one", b"two"]
    junk = [e for e in events if isinstance(e, Junk)]
    assert junk[0].size == 16 and not junk[0].blank
    assert junk[1].blank            # the "\n" after EB CR is a blank keep-alive


def test_end_block_without_cr_ends_the_frame():
    d = FrameDecoder()
    assert d.feed(b"\x0bone\x1c\x0btwo\x1c\r") == [b"one", b"two"]


def test_cr_after_end_block_swallowed_across_feeds():
    d = FrameDecoder()
    assert d.feed(b"\x0bone\x1c") == [b"one"]
    assert d.feed(b"\r") == []          # not junk: it belongs to the previous frame's trailer
    assert d.feed(encode(b"two")) == [b"two"]


def test_start_block_inside_open_frame_abandons_partial():
    events = FrameDecoder().feed(b"\x0bpartial\x0bwhole\x1c\r")
    assert events == [Abandoned(7), b"whole"]


def test_oversize_frame_fails_decoder_and_keeps_head():
    d = FrameDecoder(max_frame=10)
    events = d.feed(b"\x0b" + MSG)
    assert len(events) == 1 and isinstance(events[0], Oversize)
    assert events[0].head.startswith(b"MSH|")
    assert d.failed and d.feed(encode(b"x")) == []


def test_oversize_across_chunks():
    d = FrameDecoder(max_frame=100)
    assert d.feed(b"\x0b" + b"a" * 60) == []
    assert d.in_frame
    events = d.feed(b"a" * 60)
    assert isinstance(events[0], Oversize) and events[0].size == 120


def test_frame_exactly_at_limit_is_accepted():
    d = FrameDecoder(max_frame=5)
    assert d.feed(encode(b"12345")) == [b"12345"]


def test_in_frame_tracks_open_frames():
    d = FrameDecoder()
    d.feed(b"\x0bMSH|")
    assert d.in_frame and d.buffered == 4
    d.feed(b"x\x1c\r")
    assert not d.in_frame


payloads = st.lists(
    st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")),
    min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(payloads, st.data())
def test_any_chunking_gives_the_same_frames(messages, data):
    stream = b"".join(encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    d = FrameDecoder()
    out = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out.extend(frames(d.feed(stream[prev:cut])))
        prev = cut
    assert out == messages


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.data())
def test_arbitrary_bytes_never_raise_and_stay_bounded(blob, data):
    d = FrameDecoder(max_frame=256)
    step = data.draw(st.integers(1, 64))
    for i in range(0, len(blob), step):
        for event in d.feed(blob[i:i + step]):
            if isinstance(event, bytes):
                assert len(event) <= 256 and b"\x0b" not in event and b"\x1c" not in event
        assert d.buffered <= 256 + step


def test_whole_frame_reads_that_are_not_one_plain_frame_take_the_general_path():
    # Each looks like SB ... EB CR in one read but is not exactly one frame: the quick path for
    # a single whole frame must leave them to the general loop.
    assert FrameDecoder().feed(b"\x0bone\x1c\x0btwo\x1c\r") == [b"one", b"two"]
    events = FrameDecoder().feed(b"\x0bpart\x0bwhole\x1c\r")
    assert events == [Abandoned(4), b"whole"]
    events = FrameDecoder(max_frame=5).feed(encode(b"123456"))
    assert len(events) == 1 and isinstance(events[0], Oversize) and events[0].size == 6
    d = FrameDecoder()
    assert d.feed(b"\x0bhead") == [] and d.feed(b"\x0btail\x1c\r") == [Abandoned(4), b"tail"]
    d = FrameDecoder()
    assert d.feed(b"\x0bfirst\x1c") == [b"first"]          # the CR may still come: swallowed
    assert d.feed(b"\x0bsecond\x1c\r") == [b"second"] and not d.in_frame
    assert d.feed(encode(b"third")) == [b"third"]
