"""Release by evidence on the cdc line: a CU test and a decision per batch, and the electronic
batch records' hash chain (darkfab verify-records) against edits, deletions and reordering.

One 2-day run, 12-hour batches, weight loop off, the blend filling the dies at 1.2 × the
nominal bulk density from 12 h on: tablets 20 % heavy carry 120 % of label claim, so batches
2 and 3 fail Ph. Eur. 2.9.47 (AV ≥ 120 − 101.5 = 18.5 > L1 = 15) and are rejected; batch 1
(no alarm rule) is released."""

from __future__ import annotations

import json
import shutil

import pytest

from darkfab.scenarios import load_scenario, run_scenario
from darkfab.scenarios.batch_records import RECORDS_FILE, genesis, record_hash, verify_records
from darkfab.scenarios.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    s = load_scenario("cdc-line", [
        "scenario.horizon_s=172800", "continuous_lines.cdc.batch_hours=12",
        "continuous_lines.cdc.loops.weight_control=false",
        "continuous_lines.cdc.disturbances=[{time_s = 43200, bulk_density_factor = 1.2}]",
        "continuous_lines.cdc.release.investigate_alarm_priorities=[]"])
    return run_scenario(s, out_dir=tmp_path_factory.mktemp("records") / "run", verify_run=False)


def _lines(d):
    return (d / RECORDS_FILE).read_text().splitlines()


def _copy(run, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(run.out_dir, d)
    return d


def test_decisions_follow_the_rules(run):
    batches = run.summary["continuous_lines"]["cdc"]["batches"]
    closed = [b for b in batches if not b.get("open")]
    assert [b["decision"] for b in closed] == ["released", "rejected", "rejected"]
    first, heavy = closed[0]["cu"], closed[1]["cu"]
    assert first["passed"] and first["n"] == 400 and first["k"] == 2.23
    assert heavy["mean_pct"] == pytest.approx(120.0, abs=1.0)
    assert heavy["reference_pct"] == 101.5 and not heavy["passed"]
    # AV = |M − X̄| + k·s, from the reported figures
    assert heavy["acceptance_value"] == pytest.approx(
        heavy["mean_pct"] - 101.5 + 2.23 * heavy["sd_pct"])
    assert any("AV" in r for r in closed[1]["decision_reasons"])


def test_records_are_written_and_intact(run, capsys):
    recs = [json.loads(x) for x in _lines(run.out_dir)]
    closed = [b for b in run.summary["continuous_lines"]["cdc"]["batches"] if not b.get("open")]
    assert [r["batch"] for r in recs] == [b["batch"] for b in closed]
    assert recs[0]["prev_sha256"] == genesis(run.summary["run_id"])
    for i, r in enumerate(recs):
        assert r["seq"] == i and r["sha256"] == record_hash(r)
        assert r["sha256"] == closed[i]["record_sha256"]
        if i:
            assert r["prev_sha256"] == recs[i - 1]["sha256"]
        assert sum(g["fraction"] for g in r["genealogy"]) == pytest.approx(1.0)
        kg = sum(g["kg"] for g in r["genealogy"])  # the units' tablets, QC samples left out
        assert kg == pytest.approx(r["accepted_kg"], rel=1e-6)
        assert r["decision"] == closed[i]["decision"] and "diverted_kg_by_cause" in r
    assert verify_records(run.out_dir) == ([], 3)
    assert main(["verify-records", str(run.out_dir)]) == 0
    assert "3 batch record(s) intact" in capsys.readouterr().out


def test_an_edited_record_is_detected(run, tmp_path, capsys):
    d = _copy(run, tmp_path)
    lines = _lines(d)
    rec = json.loads(lines[1])
    rec["decision"] = "released"  # a rejected batch made to look released
    lines[1] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    (d / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    problems, _ = verify_records(d)
    assert any("line 2" in p and "edited" in p for p in problems)
    assert main(["verify-records", str(d)]) == 1
    assert "TAMPERED" in capsys.readouterr().err
    # a forger who recomputes that record's hash breaks the next link and summary.json
    rec["sha256"] = record_hash(rec)
    lines[1] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    (d / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    problems, _ = verify_records(d)
    assert any("line 3" in p and "chain" in p for p in problems)
    assert any("batch " + rec["batch"] in p for p in problems)


@pytest.mark.parametrize("how", ["delete-middle", "delete-last", "swap"])
def test_missing_or_reordered_records_are_detected(run, tmp_path, how):
    d = _copy(run, tmp_path)
    lines = _lines(d)
    if how == "delete-middle":
        del lines[1]
    elif how == "delete-last":
        del lines[-1]  # the chain that is left is intact: summary.json tells
    else:
        lines[0], lines[1] = lines[1], lines[0]
    (d / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    problems, _ = verify_records(d)
    assert problems
    if how == "delete-last":
        assert any("holds 2 record(s)" in p for p in problems)
    else:
        assert any("missing or out of order" in p for p in problems)
    assert main(["verify-records", str(d)]) == 1


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["verify-records", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "x"}))
    assert main(["verify-records", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "no batch_records.jsonl" in err


@pytest.mark.parametrize("sets, says", [
    (["continuous_lines.cdc.release.sample_size=200"], "no sourced row for n = 200"),
    (["continuous_lines.cdc.release.test=\"ph_eur_2.9.47_option2\""], "needs c1 and c2"),
    (["continuous_lines.cdc.release.k=2.3"], "both k and c2"),
])
def test_release_settings_are_validated(sets, says):
    from darkfab.scenarios.loader import ScenarioError
    with pytest.raises(ScenarioError) as e:
        load_scenario("cdc-line", sets)
    text = " ".join(p.format(e.value.file) for p in e.value.problems)
    assert "continuous_lines.cdc.release" in text and says in text
