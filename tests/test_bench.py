"""Smoke test of the benchmark: one quick repetition of every scenario, in real kernels.

No timing is asserted (the machine may be busy): only that every scenario
ran, produced numbers on both sides where it has two, and that the table,
the plots and the report come out of them.
"""

import math

import pytest

import benchmarks as bench

pytestmark = [pytest.mark.model, pytest.mark.kernel]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    lines = []
    results = bench.run(
        quick=True, progress=lines.append, work_dir=tmp_path_factory.mktemp("bench")
    )
    assert lines, "progress was never reported"
    return results


def _numbers(values):
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def test_every_scenario_ran_and_measured(results):
    assert [result.name for result in results] == list(bench.SCENARIOS)
    for result in results:
        assert result.error is None, (result.name, result.error)
        assert result.metrics, result.name
        judged = [metric for metric in result.metrics if metric.passed is not None]
        assert judged, f"{result.name} has no row with a target"
        for metric in result.metrics:
            assert _numbers(metric.ours), (result.name, metric.name)
            if metric.baseline:
                assert _numbers(metric.baseline), (result.name, metric.name)
            if metric.passed is not None:
                assert metric.ratio is not None, (result.name, metric.name)
                assert metric.verdict in ("pass", "MISS")


def test_both_sides_saw_the_same_prompt(results):
    by_name = {result.name: result for result in results}
    overhead_notes = " ".join(by_name["overhead"].notes)
    assert "the same token ids" in overhead_notes
    assert "DIFFER" not in " ".join(by_name["warm_vs_cold"].notes)
    assert "DIFFER" not in " ".join(by_name["prefix"].notes)


def test_table_plots_and_report(results, tmp_path):
    text = bench.table(results)
    for name in bench.SCENARIOS:
        assert name in text
    assert "pass" in text or "MISS" in text
    plots = bench.plot(results, tmp_path / "benchmarks")
    assert plots and all(path.suffix == ".png" and path.stat().st_size > 0 for path in plots)
    report = bench.write_report(
        results,
        tmp_path / "BENCHMARKS.md",
        plots=plots,
        command="python -m benchmarks --quick",
    )
    markdown = report.read_text()
    assert "| scenario | metric |" in markdown
    assert "python -m benchmarks --quick" in markdown
    assert "benchmarks/conversation.png" in markdown


def test_the_command_line_names_the_scenarios(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--scenarios", "nonsense"])
    assert "known: overhead" in capsys.readouterr().err


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="unknown scenario"):
        bench.run(["nope"], quick=True, progress=lambda line: None)


def test_update_keeps_the_scenarios_not_run_again(results, tmp_path):
    saved = bench.save_json(results, tmp_path / "results.json")
    kept = bench.load_json(saved)
    assert [r.name for r in kept] == [r.name for r in results]
    assert [m.ratio for r in kept for m in r.metrics] == [
        m.ratio for r in results for m in r.metrics
    ]
    fresh = bench.ScenarioResult(name="runtimes", title="again", ran="now: `cmd`")
    merged = bench.merge([fresh], kept)
    assert [r.name for r in merged] == list(bench.SCENARIOS)
    assert merged[-1] is fresh and merged[0].title == results[0].title


def test_runtimes_compares_process_and_server_with_thread_mode(results):
    runtimes = {result.name: result for result in results}["runtimes"]
    names = [metric.name for metric in runtimes.metrics]
    assert "decode, tiny llama: process ÷ thread, per repetition" in names
    assert "decode, tiny llama: loopback server ÷ thread, per repetition" in names
    assert all(mode in " ".join(names) for mode in ("thread mode", "process mode", "remote mode"))
    assert "the same token ids as mlx-lm" in runtimes.notes[0]
