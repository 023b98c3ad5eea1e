"""The WebShop-style shop: the oracle buys the right thing, partial purchases earn WebShop's partial
reward, bad commands are invalid turns, the page reaches only the shop, and close() stops everything."""

from __future__ import annotations

import threading

import psutil
import pytest

import agentgym
from agentgym.envs.web.catalog import HELD_OUT_CATEGORIES, catalog, goals, purchase_reward

SHOP = "agentgym/WebShop-v0"


def play_oracle(env, task_id):
    observation, info = env.reset(options={"task_id": task_id})
    while (action := env.unwrapped.expert_action()) is not None:
        observation, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return reward, info


@pytest.mark.parametrize(("split", "count"), [("test", 20), ("test_ood", 10)])
def test_the_oracle_buys_exactly_what_was_asked(split, count):
    env = agentgym.make(SHOP, split=split)
    try:
        for task in env.unwrapped.tasks[:count]:
            reward, info = play_oracle(env, task.id)
            assert reward == 1.0 and info["won"] and info["bought"] == task.answer, task.id
    finally:
        env.close()


def test_splits_are_disjoint_and_ood_asks_only_for_held_out_categories():
    ids = {split: {goal.id for goal in goals(split)} for split in ("train", "dev", "test", "test_ood")}
    assert sum(len(v) for v in ids.values()) == len(set().union(*ids.values()))
    assert {goal.category for goal in goals("test_ood")} <= set(HELD_OUT_CATEGORIES)
    assert not {goal.category for goal in goals("train")} & set(HELD_OUT_CATEGORIES)


def test_a_wrong_option_earns_webshops_partial_reward():
    env = agentgym.make(SHOP, split="test")
    try:
        task = env.unwrapped.tasks[0]
        goal = next(g for g in goals("test") if g.id == task.id)
        env.reset(options={"task_id": task.id})
        while True:
            action = env.unwrapped.expert_action()
            if action.startswith("select"):  # skip choosing options: the first listed value stays
                buy = next(f"click[{e.id}]" for e in env.unwrapped._elements if e.label == "Buy Now")
                _, reward, terminated, _, info = env.step(buy)
                break
            env.step(action)
        chosen = dict(item.split("=", 1) for item in info["options"].split(";"))
        product = next(p for p in catalog() if p.id == info["bought"])
        assert terminated and reward == pytest.approx(purchase_reward(goal, product, chosen)) and reward < 1.0
    finally:
        env.close()


def test_bad_commands_are_invalid_turns():
    env = agentgym.make(SHOP, split="dev")
    try:
        observation, _ = env.reset(seed=0)
        for action, message in (("click[99]", "no element [99]"), ("dance", "use search[query]"),
                                ("scroll[left]", "up or down"), ("type[2][hello]", "not a text box")):
            observation, reward, terminated, _, info = env.step(action)
            assert info["invalid_action"] and reward == 0 and not terminated and message in observation["text"]
        observation, *_ = env.step("search[yoga mat]")
        assert "results for" in observation["text"]
        observation, _, _, _, info = env.step("select[1][huge]")
        assert info["invalid_action"]
    finally:
        env.close()


def test_pages_reach_only_the_shop_and_close_stops_server_and_browser():
    before = {t.ident for t in threading.enumerate()}
    env = agentgym.make(SHOP, split="dev")
    env.reset(seed=0)
    page = env.unwrapped._page
    page.evaluate("fetch('https://pypi.org/simple/').catch(() => null)")
    page.evaluate("fetch(location.origin + '/search').then(r => r.status)")
    assert any("pypi.org" in url for url in env.unwrapped._browser.blocked)
    assert not any("127.0.0.1" in url for url in env.unwrapped._browser.blocked)
    env.close()
    assert not [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "agentgym-shop"]


MINIWOB_IDS = [env_id for env_id in agentgym.list_envs() if env_id.startswith("agentgym/MiniWoB-")]


@pytest.mark.parametrize("env_id", MINIWOB_IDS)
def test_miniwob_scripted_solvers_win(env_id):
    env = agentgym.make(env_id, split="test")
    try:
        for task in env.unwrapped.tasks[:5]:
            observation, info = env.reset(options={"task_id": task.id})
            assert observation["text"].startswith("Instruction: ") and info["instruction"]
            while (action := env.unwrapped.expert_action()) is not None:
                observation, reward, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            assert terminated and reward == 1.0 and info["won"] and 0 < info["time_reward"] <= 1, task.id
    finally:
        env.close()


def test_miniwob_reward_comes_from_the_page():
    env = agentgym.make("agentgym/MiniWoB-ClickButton-v0", split="dev")
    try:
        observation, info = env.reset(seed=3)
        right = env.unwrapped.expert_action()
        wrong = next(f"click[{e.id}]" for e in env.unwrapped._elements if e.role == "button" and f"click[{e.id}]" != right)
        observation, reward, terminated, _, info = env.step("press the big button")
        assert info["invalid_action"] and not terminated
        observation, reward, terminated, _, info = env.step(wrong)
        assert terminated and reward == -1.0 and not info["won"]
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [SHOP, "agentgym/MiniWoB-ClickButton-v0"])
def test_a_killed_browser_truncates_the_episode_and_the_next_reset_restarts_it(env_id):
    env = agentgym.make(env_id, split="dev")
    try:
        env.reset(seed=0)
        browser = env.unwrapped._browser
        for pid in browser.pids:
            psutil.Process(pid).kill()
        observation, reward, terminated, truncated, info = env.step("click[1]")
        assert truncated and not terminated and info["engine_crashed"] and "crashed" in observation["text"]
        observation, info = env.reset(seed=1)
        assert browser.starts == 2 and browser.pids
        while (action := env.unwrapped.expert_action()) is not None:
            observation, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert info["won"]
    finally:
        env.close()


def test_an_element_that_cannot_be_clicked_is_an_invalid_turn_not_a_crash():
    env = agentgym.make("agentgym/MiniWoB-ClickButton-v0", split="dev")
    try:
        env.reset(seed=0)
        right = env.unwrapped.expert_action()
        env.unwrapped._page.evaluate("document.querySelectorAll('#area button').forEach(b => b.disabled = true)")
        observation, _, terminated, truncated, info = env.step(right)
        assert info["invalid_action"] and not (terminated or truncated) and "disabled" in observation["text"]
    finally:
        env.close()


def test_many_shop_episodes_reuse_one_browser_and_stay_flat():
    """Peers' browser envs leaked a browser or a context per episode; here 40 episodes share one
    Chromium, and its process count (renderers come and go with contexts), memory and our threads stay
    flat."""
    env = agentgym.make(SHOP, split="train")
    browser_rss = lambda: sum(psutil.Process(pid).memory_info().rss for pid in env.unwrapped._browser.pids)
    try:
        samples = []
        for episode in range(40):
            env.reset(seed=episode)
            for _ in range(3):
                env.step(env.unwrapped.expert_action())
            if episode in (9, 39):
                samples.append((len(env.unwrapped._browser.pids), threading.active_count(), browser_rss()))
        (procs_early, threads_early, rss_early), (procs_late, threads_late, rss_late) = samples
        assert env.unwrapped._browser.starts == 1 and procs_late == procs_early and threads_late == threads_early
        assert (rss_late - rss_early) / 2**20 < 150, f"browser RSS grew {(rss_late - rss_early) / 2**20:.0f} MB"
    finally:
        env.close()


def test_screenshot_mode_adds_the_page_image_and_element_boxes():
    agentgym.check_env(lambda: agentgym.make("agentgym/MiniWoB-ClickButton-v0", split="test", screenshot=True))
    env = agentgym.make("agentgym/MiniWoB-ClickButton-v0", split="dev", screenshot=True)
    try:
        observation, info = env.reset(seed=0)
        assert observation["image"].shape == (400, 500, 3) and observation["image"].std() > 0
        right = env.unwrapped.expert_action()
        x1, y1, x2, y2 = info["element_boxes"][right[6:-1]]
        assert 0 <= x1 < x2 <= 500 and 0 <= y1 < y2 <= 400
        observation, _, _, _, info = env.step("click[999]")  # invalid: the picture stays
        assert info["invalid_action"] and observation["image"].shape == (400, 500, 3)
    finally:
        env.close()


def _chromium_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if "chrom" in p.name()}


def test_an_env_stepped_on_a_worker_thread_closes_from_another_and_frees_its_browser():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    env = agentgym.make("agentgym/MiniWoB-ClickButton-v0", split="train")
    worker = threading.Thread(target=lambda: env.reset(seed=0))  # the browser starts on the worker
    worker.start()
    worker.join()
    assert _chromium_pids() - before
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    env.close()  # used to raise (the driver count lived in the worker's thread-local record), then leaked
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in started if psutil.pid_exists(pid)], timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]  # Chromium and Playwright's driver
