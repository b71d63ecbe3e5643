"""Background jobs (-b) in a real kernel with the embedded model."""

import html
import time

import pytest

from kernel_helpers import execute, printed, stream_text

pytestmark = [pytest.mark.model, pytest.mark.kernel]


def widget_updates(messages):
    return [m for m in messages if m["msg_type"] == "comm_msg"]


def test_background_jobs_queue_in_order_while_cells_run(kernel):
    _, client = kernel
    started = time.monotonic()
    reply, messages = execute(client, "%%mlx -b -n 12 -o first\nWhat is the capital of France?")
    assert reply["status"] == "ok"
    returned_after = time.monotonic() - started
    assert "background job 1" in stream_text(messages)
    assert any(
        m["msg_type"] == "display_data"
        and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
        for m in messages
    )
    reply, _ = execute(client, "%%mlx -b -n 12 -o second --raw\nOne, two, three,")
    assert reply["status"] == "ok"
    # A plain cell runs while the jobs stream (timings are for the benchmark;
    # here only a gross failure, such as waiting for the jobs, fails).
    latencies = []
    for _ in range(5):
        tick = time.monotonic()
        reply, _ = execute(client, "1 + 1")
        latencies.append(time.monotonic() - tick)
        assert reply["status"] == "ok"
    assert max(latencies) < 1.0
    assert returned_after < 2.0
    # --out is set only when a job finishes: the second is queued behind the first.
    assert printed(client, "'first' in globals(), 'second' in globals()") in (
        "False False",
        "True False",
    )
    reply, messages = execute(client, "%mlx wait all", timeout=180)
    text = stream_text(messages)
    assert "job 1: done" in text and "job 2: done" in text
    assert "Paris" in printed(client, "first.text")
    assert printed(client, "second.finish_reason") in ("stop", "length")
    # Both jobs ran one after the other, in submission order.
    rows = printed(
        client,
        "[r['prompt'] for r in get_ipython().find_magic('mlx', 'cell').__self__.session.rows[-2:]]",
    )
    assert rows.startswith("[") and len(eval(rows)) == 2
    reply, messages = execute(client, "%mlx jobs")
    listing = stream_text(messages)
    assert listing.count("done") == 2 and "smollm2" in listing


def test_cancel_stops_a_background_job_and_interrupt_does_not(kernel):
    manager, client = kernel
    reply, messages = execute(client, "%%mlx -b -n 300 -o long\nWrite a long essay about Rome.")
    job_id = stream_text(messages).split("background job ")[1].split(":")[0]
    # Give it time to start streaming.
    time.sleep(6)
    manager.interrupt_kernel()
    time.sleep(1)
    reply, messages = execute(client, "%mlx jobs")
    assert "running" in stream_text(messages)  # the interrupt left it alone
    reply, messages = execute(client, f"%mlx cancel {job_id}")
    assert f"Cancelling 1 job(s): {job_id}" in stream_text(messages)
    reply, messages = execute(client, f"%mlx wait {job_id}", timeout=60)
    assert f"job {job_id}: cancelled" in stream_text(messages)
    assert printed(client, "long.finish_reason") == "cancelled"
    reply, _ = execute(client, "%mlx cancel 999")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    # The runtime is still fine.
    reply, messages = execute(client, "%%mlx -n 8\nWhat is the capital of France?")
    assert reply["status"] == "ok" and "Paris" in stream_text(messages)


def test_widget_updates_stay_small_and_carry_the_whole_answer(kernel, tiny_llama):
    _, client = kernel
    # The fast tiny model: several segments' worth of text in a few seconds.
    reply, _ = execute(
        client, f"%%mlx -b -m {tiny_llama} -n 600 -o traffic --raw\nThe history of Rome"
    )
    assert reply["status"] == "ok"
    _, messages = execute(client, "%mlx wait all", timeout=120)
    updates = [
        (m["content"]["comm_id"], m["content"]["data"]["state"]["value"])
        for m in messages
        if m["msg_type"] == "comm_msg"
        and "value" in m["content"]["data"].get("state", {})
        and "mlx-magic-text" in m["content"]["data"]["state"]["value"]
    ]
    assert len(updates) >= 3  # it streamed
    # One update carries one segment (512 characters at most, escaped), never the whole answer.
    assert max(len(value) for _, value in updates) < 1200
    latest = {}
    for comm_id, value in updates:
        latest[comm_id] = html.unescape(value.split(">", 1)[1].rsplit("</pre>", 1)[0])
    shown = "".join(latest.values())  # segments in the order they were opened
    text = printed(client, "traffic.text")
    assert text and shown.strip() == text
