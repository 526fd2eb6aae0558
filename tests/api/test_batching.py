"""Behaviour of the micro-batcher, driven by a fake numpy ``infer`` (the batcher is under test).

The fake model returns, for each image, a row derived from the image's own pixels, so any
mix-up of results between callers shows. It records every batch it sees. Every image is
submitted as the route submits it, as an awaitable decoding (``decoding`` wraps an array).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from cats_dogs_other.api.batching import (
    BatcherClosedError,
    InferenceTimeoutError,
    MicroBatcher,
    QueueFullError,
)
from cats_dogs_other.api.metrics import Metrics
from tests.api.support import decoding

SHAPE = (4, 4, 3)


def image(i: int) -> np.ndarray:
    return np.full(SHAPE, float(i), dtype=np.float32)


def expected_row(i: int) -> np.ndarray:
    return np.array([i, 2 * i, 1.0], dtype=np.float32)


class FakeModel:
    """``infer`` stand-in: row = (pixel, 2*pixel, 1); a NaN pixel makes the call fail."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(timeout=10)
        self.batches.append(len(batch))
        time.sleep(self.delay_s)
        px = batch[:, 0, 0, 0]
        if np.isnan(px).any():
            raise ValueError("bad pixels in the batch")
        return np.stack([px, 2 * px, np.ones_like(px)], axis=1)


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def make(model: Callable[[np.ndarray], np.ndarray], **overrides: float) -> MicroBatcher:
    options: dict[str, float] = {
        "max_batch_size": 8,
        "max_wait_ms": 20,
        "queue_size": 64,
        "timeout_s": 5,
    }
    options.update(overrides)
    return MicroBatcher(
        model,
        max_batch_size=int(options["max_batch_size"]),
        max_wait_ms=options["max_wait_ms"],
        queue_size=int(options["queue_size"]),
        timeout_s=options["timeout_s"],
        lanes=int(options.get("lanes", 1)),
    )


def submit_all(
    model: Callable[[np.ndarray], np.ndarray], count: int, **overrides: float
) -> list[np.ndarray]:
    """Rows for images 0..count-1, submitted at once to a batcher started and stopped here."""

    async def main() -> list[np.ndarray]:
        batcher = make(model, **overrides)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(decoding(image(i))) for i in range(count)))
        finally:
            await batcher.stop()

    return run(main)


def test_concurrent_submits_are_coalesced_and_each_gets_its_own_row() -> None:
    model = FakeModel(delay_s=0.01)

    results = submit_all(model, 8, max_batch_size=8, max_wait_ms=50)
    for i, row in enumerate(results):
        np.testing.assert_array_equal(row, expected_row(i))
    assert model.batches == [8]
    assert model.threads == {"inference"}  # not the event loop's thread


def test_results_follow_submit_order_across_many_batches() -> None:
    model = FakeModel(delay_s=0.002)

    results = submit_all(model, 37, max_batch_size=5, max_wait_ms=2)
    assert [float(r[0]) for r in results] == [float(i) for i in range(37)]
    assert sum(model.batches) == 37
    assert max(model.batches) <= 5


def test_batch_size_never_exceeds_the_maximum_under_load() -> None:
    model = FakeModel(delay_s=0.005)

    async def main() -> None:
        batcher = make(model, max_batch_size=4, max_wait_ms=5, queue_size=200)
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(decoding(image(i))) for i in range(100)))
        finally:
            await batcher.stop()

    run(main)
    assert max(model.batches) == 4
    assert sum(model.batches) == 100


def test_a_request_runs_as_a_partial_batch_after_max_wait_when_a_mate_decodes_slowly() -> None:
    model = FakeModel()

    async def main() -> float:
        batcher = make(model, max_batch_size=8, max_wait_ms=30)
        await batcher.start()
        try:
            slow = asyncio.ensure_future(batcher.submit(decoding(image(4), delay_s=0.3)))
            started = time.monotonic()
            row = await batcher.submit(decoding(image(3)))
            np.testing.assert_array_equal(row, expected_row(3))
            elapsed = time.monotonic() - started
            np.testing.assert_array_equal(await slow, expected_row(4))
            return elapsed
        finally:
            await batcher.stop()

    elapsed = run(main)
    assert model.batches == [1, 1]
    assert 0.025 <= elapsed < 2.0  # waited for company about max_wait, then ran alone


def test_requests_spread_over_time_form_separate_partial_batches() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model, max_batch_size=8, max_wait_ms=10)
        await batcher.start()
        try:
            first = [asyncio.ensure_future(batcher.submit(decoding(image(i)))) for i in range(3)]
            await asyncio.gather(*first)
            await asyncio.sleep(0.05)
            await asyncio.gather(*(batcher.submit(decoding(image(i))) for i in range(2)))
        finally:
            await batcher.stop()

    run(main)
    assert model.batches == [3, 2]


def test_a_failing_image_does_not_fail_its_batch_mates() -> None:
    model = FakeModel()

    async def main() -> list[object]:
        batcher = make(model, max_batch_size=8, max_wait_ms=50)
        await batcher.start()
        try:
            images = [image(i) for i in range(5)]
            images[2] = np.full(SHAPE, np.nan, dtype=np.float32)
            return await asyncio.gather(
                *(batcher.submit(decoding(x)) for x in images), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = run(main)
    assert isinstance(results[2], ValueError)
    for i in (0, 1, 3, 4):
        np.testing.assert_array_equal(results[i], expected_row(i))
    assert model.batches[0] == 5  # the whole batch was tried first
    assert sorted(model.batches[1:]) == [1] * 5  # then one by one


def test_an_image_of_the_wrong_shape_only_fails_itself() -> None:
    model = FakeModel()

    async def main() -> list[object]:
        batcher = make(model, max_batch_size=8, max_wait_ms=50)
        await batcher.start()
        try:
            odd = np.zeros((5, 5, 3), dtype=np.float32)
            odd[0, 0, 0] = np.nan
            return await asyncio.gather(
                batcher.submit(decoding(image(1))),
                batcher.submit(decoding(odd)),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    good, bad = run(main)
    np.testing.assert_array_equal(good, expected_row(1))
    assert isinstance(bad, ValueError)


def test_queue_full_is_refused_at_once() -> None:
    gate = threading.Event()
    model = FakeModel(gate=gate)

    async def main() -> None:
        batcher = make(model, max_batch_size=1, max_wait_ms=0, queue_size=3)
        await batcher.start()
        try:
            in_flight = asyncio.ensure_future(batcher.submit(decoding(image(0))))
            for _ in range(100):  # until the worker has taken it and is blocked on the gate
                if model.threads:
                    break
                await asyncio.sleep(0.01)
            queued = [asyncio.ensure_future(batcher.submit(decoding(image(i)))) for i in (1, 2, 3)]
            await asyncio.sleep(0)  # admitted, decoding
            await asyncio.sleep(0)  # decoded and queued
            assert batcher.queue_depth == 3
            started = time.monotonic()
            with pytest.raises(QueueFullError):
                await batcher.submit(decoding(image(4)))
            assert time.monotonic() - started < 0.05
            gate.set()
            results = await asyncio.gather(in_flight, *queued)
            assert [float(r[0]) for r in results] == [0.0, 1.0, 2.0, 3.0]
        finally:
            gate.set()
            await batcher.stop()

    run(main)


def test_timeout_raises_and_the_late_result_is_dropped() -> None:
    gate = threading.Event()
    model = FakeModel(gate=gate)
    metrics = Metrics()

    async def main() -> None:
        batcher = MicroBatcher(
            model, max_batch_size=4, max_wait_ms=0, queue_size=8, timeout_s=0.1, metrics=metrics
        )
        await batcher.start()
        try:
            with pytest.raises(InferenceTimeoutError):
                await batcher.submit(decoding(image(1)))
            # a request queued behind the stuck batch expires too and is then skipped
            with pytest.raises(InferenceTimeoutError):
                await batcher.submit(decoding(image(2)))
            gate.set()
            # the worker recovers and serves new requests normally
            np.testing.assert_array_equal(await batcher.submit(decoding(image(5))), expected_row(5))
        finally:
            gate.set()
            await batcher.stop()

    run(main)
    # image 1 ran (its late result was dropped), image 2 expired in the queue and was skipped
    assert model.batches == [1, 1]
    assert (
        metrics.registry.get_sample_value(
            "cats_dogs_other_inference_rejections_total", {"reason": "timeout"}
        )
        == 2
    )


def test_stop_drains_what_is_queued_then_refuses() -> None:
    model = FakeModel(delay_s=0.01)

    async def main() -> None:
        batcher = make(model, max_batch_size=2, max_wait_ms=1)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(decoding(image(i)))) for i in range(9)]
        await asyncio.sleep(0)  # let every submit be admitted
        await batcher.stop()
        assert all(p.done() for p in pending)
        assert [float(p.result()[0]) for p in pending] == [float(i) for i in range(9)]
        assert not batcher.running
        with pytest.raises(BatcherClosedError):
            await batcher.submit(decoding(image(1)))

    run(main)
    assert sum(model.batches) == 9


def test_submit_before_start_is_refused_with_a_503_error() -> None:
    async def main() -> None:
        with pytest.raises(QueueFullError):
            await make(FakeModel()).submit(decoding(image(0)))

    run(main)


def test_metrics_record_batches_and_queue_depth() -> None:
    model = FakeModel(delay_s=0.005)
    metrics = Metrics()

    async def main() -> None:
        batcher = MicroBatcher(
            model, max_batch_size=4, max_wait_ms=20, queue_size=32, timeout_s=5, metrics=metrics
        )
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(decoding(image(i))) for i in range(8)))
        finally:
            await batcher.stop()

    run(main)
    get = metrics.registry.get_sample_value
    assert get("cats_dogs_other_batch_size_count") == len(model.batches)
    assert get("cats_dogs_other_batch_size_sum") == 8
    assert get("cats_dogs_other_inference_seconds_count") == len(model.batches)
    assert get("cats_dogs_other_queue_depth") == 0


# -- requests still decoding: admission and arrival-aware waiting ----------------------------


async def failing_decode(delay_s: float) -> np.ndarray:
    await asyncio.sleep(delay_s)
    raise ValueError("not an image")


def test_a_lone_request_does_not_wait_for_company() -> None:
    model = FakeModel()

    async def main() -> float:
        batcher = make(model, max_wait_ms=500)
        await batcher.start()
        try:
            started = time.monotonic()
            np.testing.assert_array_equal(await batcher.submit(decoding(image(4))), expected_row(4))
            return time.monotonic() - started
        finally:
            await batcher.stop()

    assert run(main) < 0.25  # nobody else was arriving: no 500 ms wait
    assert model.batches == [1]


def test_a_batch_waits_for_requests_still_decoding() -> None:
    model = FakeModel()

    async def main() -> Any:
        batcher = make(model, max_batch_size=8, max_wait_ms=1000)
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(decoding(image(1))),
                batcher.submit(decoding(image(2), delay_s=0.05)),
                batcher.submit(decoding(image(3), delay_s=0.1)),
            )
        finally:
            await batcher.stop()

    results = run(main)
    assert [float(r[0]) for r in results] == [1.0, 2.0, 3.0]
    assert model.batches == [3]  # one batch: it waited for the slower decodes, not 1 s


def test_a_failed_decode_neither_stalls_nor_fails_the_batch() -> None:
    model = FakeModel()

    async def main() -> tuple[Any, float]:
        batcher = make(model, max_batch_size=8, max_wait_ms=2000)
        await batcher.start()
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                batcher.submit(decoding(image(1))),
                batcher.submit(failing_decode(0.05)),
                return_exceptions=True,
            )
            return results, time.monotonic() - started
        finally:
            await batcher.stop()

    (good, bad), elapsed = run(main)
    np.testing.assert_array_equal(good, expected_row(1))
    assert isinstance(bad, ValueError)
    assert elapsed < 1.0  # woken when the arrival gave up, not at max_wait
    assert model.batches == [1]


def test_requests_still_decoding_count_against_the_queue() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model, max_batch_size=8, max_wait_ms=1000, queue_size=2)
        await batcher.start()
        try:
            slow = [asyncio.ensure_future(batcher.submit(decoding(image(i), 0.1))) for i in (1, 2)]
            await asyncio.sleep(0.01)
            assert batcher.arriving == 2
            refused: Any = decoding(image(3))
            with pytest.raises(QueueFullError):
                await batcher.submit(refused)  # refused before any decoding was spent on it
            assert refused.cr_frame is None  # closed, never run: no "never awaited" warning
            assert [float(r[0]) for r in await asyncio.gather(*slow)] == [1.0, 2.0]
        finally:
            await batcher.stop()

    run(main)
    assert model.batches == [2]


def test_stop_waits_for_requests_still_decoding() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model, max_wait_ms=10)
        await batcher.start()
        pending = asyncio.ensure_future(batcher.submit(decoding(image(6), delay_s=0.1)))
        await asyncio.sleep(0.01)  # admitted, still decoding
        await batcher.stop()
        np.testing.assert_array_equal(pending.result(), expected_row(6))

    run(main)
    assert model.batches == [1]


# -- with the wheel's tiny real model ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_inference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    inference = pytest.importorskip("kto.inference")
    testing = pytest.importorskip("cats_dogs_other.testing.tiny_model")
    path = testing.save_tiny_model(tmp_path_factory.mktemp("tiny"))
    return inference.Inference(path)


def coloured_png(rgb: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    noise = np.random.default_rng(sum(rgb) + size[0]).integers(0, 40, (*size[::-1], 3))
    pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_batched_results_equal_execute_with_the_tiny_model(tiny_inference: Any) -> None:
    inf = tiny_inference
    images = [
        coloured_png(rgb, size)
        for rgb, size in [
            ((220, 20, 20), (40, 30)),
            ((20, 220, 20), (64, 64)),
            ((20, 20, 220), (33, 50)),
            ((200, 60, 40), (120, 80)),
            ((90, 90, 200), (32, 32)),
        ]
    ]

    async def main() -> list[dict[str, object]]:
        batcher = MicroBatcher(
            inf.predict_arrays,
            max_batch_size=8,
            max_wait_ms=50,
            queue_size=16,
            timeout_s=30,
        )
        await batcher.start()
        try:
            arrays = [inf.preprocess(b) for b in images]
            rows = await asyncio.gather(*(batcher.submit(decoding(a)) for a in arrays))
            return [inf.to_result(r) for r in rows]
        finally:
            await batcher.stop()

    batched = run(main)
    direct = [inf.execute(b) for b in images]
    assert [b["prediction"] for b in batched] == ["Cat", "Dog", "Other", "Cat", "Other"]
    for got, want in zip(batched, direct, strict=True):
        assert got["prediction"] == want["prediction"]
        np.testing.assert_allclose(got["values"], want["values"], rtol=1e-5, atol=1e-6)


# -- multi-image requests: admitted or refused as a whole; deadlines from admission -----------


class Decodes:
    """Decode steps that record whether they ever started (a refused batch must cost none)."""

    def __init__(self) -> None:
        self.started: list[int] = []

    async def __call__(self, i: int, delay_s: float = 0.0) -> np.ndarray:
        self.started.append(i)
        return await decoding(image(i), delay_s)


def test_a_batch_is_admitted_as_a_whole_and_keeps_its_order() -> None:
    model, decodes = FakeModel(), Decodes()

    async def main() -> list[float]:
        batcher = make(model, max_batch_size=4, queue_size=6)
        await batcher.start()
        try:
            rows = await batcher.submit_many([decodes(i, 0.01 * (6 - i)) for i in range(6)])
            return [float(r[0]) for r in rows]
        finally:
            await batcher.stop()

    assert run(main) == [0, 1, 2, 3, 4, 5]  # exactly the queue size fits


def test_a_batch_that_does_not_fit_is_refused_whole_before_any_decoding() -> None:
    model, decodes = FakeModel(), Decodes()

    async def main() -> None:
        batcher = make(model, max_wait_ms=1000, queue_size=8)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit_many([decodes(i, 0.2) for i in range(5)]))
            await asyncio.sleep(0.01)
            assert batcher.arriving == 5
            second: list[Any] = [decodes(10 + i) for i in range(4)]  # 5 + 4 > 8
            with pytest.raises(QueueFullError):
                await batcher.submit_many(second)
            assert all(c.cr_frame is None for c in second)  # closed, never run
            single = await batcher.submit(decodes(20))  # 5 + 1 fits
            assert float(single[0]) == 20
            assert len(await first) == 5
        finally:
            await batcher.stop()

    run(main)
    assert sorted(decodes.started) == [0, 1, 2, 3, 4, 20]


def test_two_concurrent_full_batches_and_singles_fit_the_default_queue() -> None:
    from cats_dogs_other.api.settings import Settings

    files = Settings.model_fields["max_batch_files"].default
    model, decodes = FakeModel(), Decodes()

    async def main() -> int:
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=5)  # the defaults
        await batcher.start()
        try:
            batches = [batcher.submit_many([decodes(i, 0.05) for i in range(files)]) for _ in "ab"]
            singles = [batcher.submit(decodes(100 + i, 0.05)) for i in range(16)]
            results = await asyncio.gather(*batches, *singles)
            return len(results)
        finally:
            await batcher.stop()

    assert run(main) == 18


def test_a_failing_part_cancels_the_rest_and_frees_every_slot() -> None:
    model, decodes = FakeModel(), Decodes()

    async def main() -> None:
        batcher = make(model, queue_size=4)
        await batcher.start()
        try:
            parts = [decodes(0, 0.3), failing_decode(0.01), decodes(2, 0.3), decodes(3, 0.3)]
            with pytest.raises(ValueError, match="not an image"):
                await batcher.submit_many(parts)
            assert batcher.arriving == 0 and batcher.queue_depth == 0
            assert len(await batcher.submit_many([decodes(i) for i in range(4)])) == 4
        finally:
            await batcher.stop()

    run(main)


def test_the_deadline_starts_at_admission_and_covers_decoding() -> None:
    model, decodes = FakeModel(), Decodes()
    metrics = Metrics()

    async def main() -> None:
        batcher = MicroBatcher(model, timeout_s=0.2, metrics=metrics)
        await batcher.start()
        try:
            started = time.monotonic()
            with pytest.raises(InferenceTimeoutError):
                await batcher.submit(decodes(1, delay_s=5))  # decoding alone exceeds it
            assert time.monotonic() - started < 1
            assert batcher.arriving == 0
        finally:
            await batcher.stop()

    run(main)
    rejections = metrics.registry.get_sample_value(
        "cats_dogs_other_inference_rejections_total", {"reason": "timeout"}
    )
    assert rejections == 1


# -- lanes: several inference threads taking whole batches from one queue -------------------


class TogetherModel(FakeModel):
    """Each call waits until ``parties`` calls are running at once (or breaks after 5 s)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.together = threading.Barrier(parties, timeout=5)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.together.wait()  # BrokenBarrierError unless another lane runs meanwhile
        return super().__call__(batch)


def test_two_lanes_run_two_batches_at_once_and_route_each_row_home() -> None:
    model = TogetherModel(parties=2)

    results = submit_all(model, 8, max_batch_size=8, max_wait_ms=50, lanes=2)
    for i, row in enumerate(results):
        np.testing.assert_array_equal(row, expected_row(i))
    assert model.batches == [4, 4]  # a wave of 8 shared between the two idle lanes
    assert model.threads == {"inference-0", "inference-1"}


class SignallingModel(FakeModel):
    """Releases ``calls`` as each call starts (before the gate)."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__(gate=gate)
        self.calls = threading.Semaphore(0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.release()
        return super().__call__(batch)


async def entered(model: SignallingModel) -> None:
    """Until one more call has reached the model (bounded)."""
    assert await asyncio.to_thread(model.calls.acquire, timeout=5)


def test_a_lane_takes_a_full_batch_while_the_others_are_busy() -> None:
    gate = threading.Event()
    model = SignallingModel(gate)

    async def main() -> list[np.ndarray]:
        batcher = make(model, max_batch_size=4, max_wait_ms=50, lanes=2)
        await batcher.start()
        try:
            first = [asyncio.ensure_future(batcher.submit(decoding(image(i)))) for i in range(2)]
            await entered(model)  # lane 0 holds its half batch (2) in the gated model
            rest = [batcher.submit(decoding(image(i))) for i in range(2, 6)]
            later = asyncio.ensure_future(asyncio.gather(*rest))
            await entered(model)  # lane 1, the only one free, took all 4
            gate.set()
            return [*(await asyncio.gather(*first)), *(await later)]
        finally:
            gate.set()
            await batcher.stop()

    results = run(main)
    assert [float(r[0]) for r in results] == [float(i) for i in range(6)]
    assert sorted(model.batches) == [2, 4]


class OverlapModel(FakeModel):
    """Records the most calls that were running at the same time."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.01)
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().__call__(batch)
        finally:
            with self.lock:
                self.running -= 1


def test_one_lane_runs_one_batch_at_a_time() -> None:
    model = OverlapModel()

    results = submit_all(model, 12, max_batch_size=2, max_wait_ms=1, lanes=1)
    assert [float(r[0]) for r in results] == [float(i) for i in range(12)]
    assert model.most == 1 and len(model.batches) >= 6
    assert model.threads == {"inference"}


def test_stop_drains_every_lane_then_refuses() -> None:
    gate = threading.Event()
    model = FakeModel(gate=gate)

    async def main() -> None:
        batcher = make(model, max_batch_size=2, max_wait_ms=1, lanes=3)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(decoding(image(i)))) for i in range(11)]
        await asyncio.sleep(0)  # let every submit be admitted
        stopping = asyncio.ensure_future(batcher.stop())
        await asyncio.sleep(0)
        gate.set()  # the lanes held in the model go on and drain the queue
        await stopping
        assert [float(p.result()[0]) for p in pending] == [float(i) for i in range(11)]
        assert not batcher.running
        with pytest.raises(BatcherClosedError):
            await batcher.submit(decoding(image(1)))

    run(main)
    assert sum(model.batches) == 11
    assert len(model.threads) > 1


def test_lanes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lanes"):
        make(FakeModel(), lanes=0)
