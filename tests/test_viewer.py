"""`agentgym view` in a real browser (Debian's Chromium through Playwright): the episode list filters and
counts, episodes show every turn, GUI screens carry their overlays where the boxes are, the file makes
no network request, record text is never markup, bad input is reported, and the server pages."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import agentgym
from agentgym import RolloutEngine, make_policy, write_jsonl
from agentgym.cli import main
from agentgym.records import Trajectory, Turn
from agentgym.viewer import make_server, open_viewer, write_html
from agentgym.viewer.page import static_data

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
COIN = "agentgym/TextWorld-CoinCollector-v0"
GUI = "agentgym/GUIGrounding-v0"
PAYLOAD = '<img src=x onerror="window.__pwned=1"></script><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    opened = context.new_page()
    errors = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def coin_episodes():
    """Four real episodes (two groups of two) of the random policy on level-1 coin games: two won, two lost."""
    with RolloutEngine(COIN, split="test", num_envs=1, concurrency="sequential", env_kwargs={"max_turns": 3}) as engine:
        plan = engine.plan(task_ids=["coin_collector-level1-s200000", "coin_collector-level1-s200001"], group_size=2,
                           seed=0)
        trajectories = engine.run(make_policy("random", seed=0), plan)
    assert 0 < sum(t.won for t in trajectories) < len(trajectories)
    return trajectories


@pytest.fixture(scope="module")
def run_folder(coin_episodes, tmp_path_factory):
    """A run folder as the trainers write it: metrics, config, report, and the saved records of one
    iteration with the GRPO advantages the trainer fills in."""
    folder = tmp_path_factory.mktemp("run")
    for group in {t.group_id for t in coin_episodes}:
        members = [t for t in coin_episodes if t.group_id == group]
        mean = sum(t.total_reward for t in members) / len(members)
        for trajectory in members:
            for turn in trajectory.turns:
                turn.advantage = trajectory.total_reward - mean
                turn.annotations = {"version": 1}
    write_jsonl(folder / "trajectories" / "iteration-0001.jsonl", coin_episodes)
    rows = [{"iteration": 0, "eval_success_rate": 0.2, "eval_mean_reward": 0.2, "eval_mean_turns": 2.5,
             "eval_invalid_rate": 0.0, "random_success_rate": 0.3},
            {"iteration": 1, "train_success_rate": 0.5, "loss": -0.02, "entropy": 1.1, "seconds_rollout": 1.0},
            {"iteration": 2, "train_success_rate": 0.75, "loss": -0.01, "entropy": 1.0, "seconds_rollout": 1.0},
            {"iteration": 2, "eval_success_rate": 0.9, "eval_mean_reward": 0.9, "eval_mean_turns": 1.4,
             "eval_invalid_rate": 0.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "config.json").write_text(json.dumps({"trainer_config": "GRPOConfig", "env_id": COIN,
                                                    "env_kwargs": {"max_turns": 3}, "model": "tiny"}))
    (folder / "report.md").write_text("# GRPO on coins\n")
    return folder


def _html(tmp_path, paths, **kwargs):
    viewer = open_viewer(paths, **kwargs)
    try:
        return write_html(viewer, tmp_path / "view.html")
    finally:
        viewer.close()


def _count(page) -> int:
    return int(page.locator("#episode-count").inner_text())


def _set_filter(page, name: str, value: str) -> None:
    before = page.locator("#episodes").inner_html()
    page.locator(f"#filters [name={name}]").select_option(value)
    page.wait_for_function("html => document.querySelector('#episodes').innerHTML !== html", arg=before)


def test_the_file_lists_filters_and_opens_episodes_groups_and_the_run(page, tmp_path, run_folder, coin_episodes):
    page.goto((_html(tmp_path, [run_folder])).as_uri())
    assert _count(page) == len(coin_episodes) == page.locator("tr.episode-row").count()
    won = sum(t.won for t in coin_episodes)
    _set_filter(page, "outcome", "won")
    assert _count(page) == won == page.locator("tr.episode-row").count()
    _set_filter(page, "outcome", "lost")
    assert _count(page) == len(coin_episodes) - won

    # An episode, turn by turn: each turn's action and reward, as recorded.
    _set_filter(page, "outcome", "")
    trajectory = max(coin_episodes, key=lambda t: t.num_turns)
    page.locator(f"tr.episode-row[data-key='{coin_episodes.index(trajectory)}'] td a").first.click()
    turns = page.locator(".turn")
    turns.first.wait_for()
    assert turns.count() == trajectory.num_turns
    for index, turn in enumerate(trajectory.turns):
        card = turns.nth(index)
        assert card.locator(".action").inner_text() == turn.action
        assert float(card.locator(".reward").inner_text().removeprefix("reward ")) == turn.reward
        assert float(card.locator(".advantage").inner_text().removeprefix("advantage ")) == pytest.approx(turn.advantage)
    assert "version" in turns.first.locator(".annotations").inner_text()

    # Its group, side by side, with the reason it taught something (or nothing).
    page.locator("#group-link").click()
    page.locator("#verdict").wait_for()
    members = [t for t in coin_episodes if t.group_id == trajectory.group_id]
    assert page.locator(".group-col").count() == len(members)
    returns = {t.total_reward for t in members}
    assert ("taught nothing" in page.locator("#verdict").inner_text()) == (len(returns) == 1)

    # The run: curves, held-out before/after with the random baseline, settings, links into the iteration.
    page.locator("#tab-runs").click()
    page.locator(".run").wait_for()
    assert page.locator("svg.curve[data-metric='train_success_rate'] circle").count() == 2
    heldout = page.locator("table.heldout").inner_text()
    assert "random choice" in heldout and "30.0%" in heldout and "before training" in heldout
    assert "after training (iteration 2)" in heldout and "90.0%" in heldout
    assert "GRPOConfig" in page.locator(".run").inner_text()
    page.locator(".iteration-link").first.click()
    page.locator("#episode-count").wait_for()
    assert _count(page) == len(coin_episodes)
    assert page.locator("#filters [name=iteration]").input_value() == "1"


def test_the_file_makes_no_network_request_and_compares_runs(page, tmp_path, run_folder):
    bare = tmp_path / "bare-run"  # a run killed early: metrics only
    bare.mkdir()
    (bare / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "train_success_rate": 0.25}) + "\n")
    path = _html(tmp_path, [run_folder, bare])
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.locator("tr.episode-row").first.wait_for()
    for view in ("#/episode/0", "#/group/0%3A1%3Ax", "#/sources", "#/runs"):
        page.evaluate("hash => { location.hash = hash; }", view)
        page.wait_for_timeout(150)
    page.locator("#config-missing").wait_for()
    assert page.locator("svg.curve[data-metric='train_success_rate'] polyline").count() == 1  # the bare run: one point
    assert page.locator("svg.curve[data-metric='train_success_rate'] circle").count() == 3
    assert requests == [path.as_uri()]
    policy = page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content")
    assert "connect-src 'none'" in policy and "default-src 'none'" in policy


def _turn(index: int, **fields) -> Turn:
    base = {"episode_id": "e", "group_id": "g", "task_id": "t", "turn_index": index, "prompt": [], "response": "go",
            "action": "go", "reward": 0.0, "terminated": False, "truncated": False, "invalid": False,
            "state_key": "s", "next_state_key": "s"}
    return Turn(**{**base, **fields})


def _episode(episode_id: str, turns: list[Turn], *, task_id: str = "t", won: bool = False) -> Trajectory:
    return Trajectory(episode_id, "g", COIN, "test", agentgym.Task(task_id, "test", "Find the coin."), 0, turns, won,
                      "random")


def test_text_from_the_env_or_the_model_is_shown_as_text_never_run(page, tmp_path):
    prompt = [{"role": "system", "content": PAYLOAD}, {"role": "user", "content": f"Current observation:\n{PAYLOAD}\n\nYour action:"}]
    modules = {"planner": {"input": PAYLOAD, "output": "plan: search"}, "executor": {"input": "search", "output": PAYLOAD}}
    turn = _turn(0, prompt=prompt, response=PAYLOAD, action=PAYLOAD, invalid=True,
                 info={"modules": modules, PAYLOAD: PAYLOAD}, annotations={"p_gt": 0.25, "note": PAYLOAD})
    write_jsonl(tmp_path / "evil.jsonl", [_episode(PAYLOAD, [turn], task_id=PAYLOAD)])
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(_html(tmp_path, [tmp_path / "evil.jsonl"]).as_uri())
    assert PAYLOAD in page.locator("#episodes").inner_text()
    page.evaluate("location.hash = '#/episode/0'")
    page.locator(".turn").wait_for()
    text = page.locator(".turn").inner_text()
    assert text.count(PAYLOAD) >= 3 and "invalid" in text and "p_gt" in text
    # AgentFlow-style info: each module's input and output.
    assert page.locator(".module").count() == 2 and "plan: search" in page.locator(".module").first.inner_text()
    page.locator(".prompt summary").click()
    assert PAYLOAD in page.locator(".prompt").inner_text()
    assert page.evaluate("window.__pwned") is None and dialogs == []
    assert page.locator("img[src=x], #view script").count() == 0


def test_a_truncated_jsonl_shows_its_complete_episodes_with_a_warning(page, tmp_path, coin_episodes):
    path = tmp_path / "cut.jsonl"
    write_jsonl(path, coin_episodes)
    whole = path.read_text()
    path.write_text(whole + whole.splitlines()[0][:150])  # a writer killed mid-line
    page.goto(_html(tmp_path, [path]).as_uri())
    assert _count(page) == len(coin_episodes)
    assert "incomplete" in page.locator("#notes").inner_text()


def test_a_record_of_an_older_schema_is_reported_with_the_missing_field(tmp_path, coin_episodes, capsys):
    record = coin_episodes[0].to_dict()
    del record["turns"][0]["next_state_key"]
    (tmp_path / "old.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match="next_state_key"):
        open_viewer([tmp_path / "old.jsonl"])
    assert main(["view", str(tmp_path / "old.jsonl"), "--out", str(tmp_path / "x.html")]) == 2
    assert "'next_state_key'" in capsys.readouterr().err
    (tmp_path / "old.json").write_text(json.dumps({"env_id": COIN, "split": "test", "policy": {}, "seeds": [0]}))
    with pytest.raises(ValueError, match="'summary'"):
        open_viewer([tmp_path / "old.json"])


def test_the_command_writes_a_file_for_records_results_and_runs_together(tmp_path, run_folder, coin_episodes):
    write_jsonl(tmp_path / "records.jsonl", coin_episodes[:2])
    result = {"env_id": COIN, "split": "test", "policy": {"name": "random"}, "seeds": [0, 1], "episodes_per_seed": 2,
              "summary": {"success_rate": {"mean": 0.5, "std": 0.0, "ci95": float("nan"), "n": 2}},
              "per_seed": [{"seed": 0, "episodes": 2}, {"seed": 1, "episodes": 2}],
              "episodes": [t.to_dict() for t in coin_episodes]}
    (tmp_path / "result.json").write_text(json.dumps(result))
    out = tmp_path / "all.html"
    assert main(["view", str(tmp_path / "records.jsonl"), str(tmp_path / "result.json"), str(run_folder),
                 "--out", str(out)]) == 0
    viewer = open_viewer([tmp_path / "records.jsonl", tmp_path / "result.json", run_folder])
    try:
        index = viewer.index()
        assert [s["kind"] for s in index["sources"]] == ["records", "results", "run"]
        assert index["total"] == 2 + 2 * len(coin_episodes)
        assert [row["seed"] for row in viewer.query({"source": 1})["rows"]] == [0, 0, 1, 1]  # the evaluation seeds
    finally:
        viewer.close()
    assert out.stat().st_size > 10_000


def test_a_large_input_is_capped_in_the_file_with_a_note(tmp_path):
    episodes = [_episode(f"e{i}", [_turn(0, response="x" * 200)], won=i % 2 == 0) for i in range(120)]
    write_jsonl(tmp_path / "many.jsonl", episodes)
    viewer = open_viewer([tmp_path / "many.jsonl"])
    try:
        data = static_data(viewer, max_episodes=30)
    finally:
        viewer.close()
    assert len(data["summaries"]) == 120 and len(data["episodes"]) == 30
    assert "30 of 120" in data["index"]["notes"][0] and "--serve" in data["index"]["notes"][0]


def test_reply_tokens_are_shaded_by_position_without_a_tokenizer(page, tmp_path):
    turn = _turn(0, response="take coin", action="take coin", action_token_ids=[5, 6, 7],
                 action_logprobs=[-0.1, -2.0, -5.0], action_entropies=[0.5, 1.5, 3.0])
    write_jsonl(tmp_path / "tokens.jsonl", [_episode("tok", [turn])])
    page.goto(_html(tmp_path, [tmp_path / "tokens.jsonl"], tokenizer="none").as_uri() + "#/episode/0")
    cells = page.locator(".turn .tok.cell")
    cells.first.wait_for()
    assert cells.count() == 3 and "not decoded" in page.locator("#episode").inner_text()
    shades = [cells.nth(i).evaluate("el => getComputedStyle(el).backgroundColor") for i in range(3)]
    alphas = [float(shade.rstrip(")").split(",")[-1]) for shade in shades]
    assert alphas[0] < alphas[1] < alphas[2]  # less likely, darker
    assert "log-prob -2" in cells.nth(1).get_attribute("title")


@pytest.fixture(scope="module")
def gui_records(tmp_path_factory):
    """A real GUI grounding episode of the oracle, and a missed box prediction with GUI-RC's samples."""
    pytest.importorskip("PIL")
    try:
        with RolloutEngine(GUI, split="test", num_envs=1) as engine:
            (hit,) = engine.run(make_policy("oracle"), engine.plan(num_tasks=1, seed=0))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        pytest.skip(f"GUI grounding cannot run here: {error}")
    miss = Trajectory.from_dict(json.loads(json.dumps(hit.to_dict())))
    miss.episode_id, miss.won = "miss", False
    samples = ["(311, 30)", "(315, 33)", "(300, 28)", "(640, 340)", "[290, 20, 330, 45]", "no idea"]
    miss.turns[0] = dataclasses.replace(miss.turns[0], action="[600, 300, 700, 380]", response="[600, 300, 700, 380]",
                                        reward=0.0, annotations={"gui_rc_samples": samples})
    path = tmp_path_factory.mktemp("gui") / "gui.jsonl"
    write_jsonl(path, [hit, miss])
    return path


def _box_on_page(page, selector):
    return page.locator(selector).first.evaluate(
        "el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }")


def test_a_gui_screenshot_shows_its_boxes_at_their_pixels(page, tmp_path, gui_records):
    viewer = open_viewer([gui_records])
    try:
        truth = viewer.episode(1, image_ref=lambda png: "")["turns"][0]["screen"]
        write_html(viewer, tmp_path / "gui.html")
    finally:
        viewer.close()
    page.goto((tmp_path / "gui.html").as_uri() + "#/episode/1")
    image = page.locator(".screen img")
    image.wait_for()
    page.wait_for_function("() => document.querySelector('.screen img').naturalWidth === 1280")
    left, top, right, bottom = _box_on_page(page, ".screen img")
    scale = (right - left) / 1280
    assert abs((bottom - top) / 720 - scale) < 1e-3

    def on_page(box):
        return [left + box[0] * scale, top + box[1] * scale, left + box[2] * scale, top + box[3] * scale]

    stroke = 3 * scale  # the outline is drawn centred on the box edge
    for selector, box in ((".target-box", truth["target_box"]), (".pred-box", [600, 300, 700, 380]),
                          (".consensus", truth["votes"]["consensus"])):
        drawn = _box_on_page(page, selector)
        expected = on_page(box)
        assert all(abs(a - b) <= stroke / 2 + 1 for a, b in zip(drawn, expected)), (selector, drawn, expected)
    x, y = truth["point"]
    cx, cy = page.locator(".pred-point circle").evaluate(
        "el => { const r = el.getBoundingClientRect(); return [(r.left + r.right) / 2, (r.top + r.bottom) / 2]; }")
    assert abs(cx - (left + x * scale)) < 1.5 and abs(cy - (top + y * scale)) < 1.5
    assert page.locator(".vote-cell").count() > 0 and "5 of 6 samples parsed" in page.locator(".overlay-legend").inner_text()
    # The oracle's hit: its point lies inside the target box.
    page.evaluate("location.hash = '#/episode/0'")
    page.wait_for_function("() => document.querySelector('#episode').dataset.key === '0'")
    page.wait_for_function("() => document.querySelector('.screen img').complete")
    target = _box_on_page(page, ".target-box")
    cx, cy = page.locator(".pred-point circle").evaluate(
        "el => { const r = el.getBoundingClientRect(); return [(r.left + r.right) / 2, (r.top + r.bottom) / 2]; }")
    assert target[0] <= cx <= target[2] and target[1] <= cy <= target[3]


def test_the_server_pages_the_list_and_loads_episodes_when_opened(page, run_folder, coin_episodes, gui_records):
    viewer = open_viewer([run_folder, gui_records])
    server = make_server(viewer, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        def get(path):
            with urllib.request.urlopen(base + path, timeout=30) as response:
                return json.load(response)

        total = len(coin_episodes) + 2
        assert get("/api/episodes?limit=2&offset=1")["total"] == total
        assert [row["key"] for row in get("/api/episodes?limit=2&offset=1")["rows"]] == [1, 2]
        assert get("/api/episodes?outcome=won")["total"] == sum(t.won for t in coin_episodes) + 1
        with pytest.raises(urllib.error.HTTPError) as error:
            get(f"/api/episode/{total}")
        assert error.value.code == 404

        page.goto(base + "/")
        page.locator("tr.episode-row").first.wait_for()
        assert _count(page) == total
        _set_filter(page, "outcome", "won")
        assert _count(page) == get("/api/episodes?outcome=won")["total"]
        page.evaluate(f"location.hash = '#/episode/{len(coin_episodes) + 1}'")  # the GUI miss, rendered on request
        page.wait_for_function("() => { const img = document.querySelector('.screen img');"
                               " return img && img.complete && img.naturalWidth === 1280; }")
        assert page.locator(".screen img").get_attribute("src").startswith("/api/image/")
        page.locator("#tab-runs").click()
        page.locator("table.heldout").wait_for()
    finally:
        server.shutdown()
        server.server_close()
        viewer.close()
