"""GUI grounding: boxes read from the page are where the elements are, the oracle hits on every split,
predictions parse on every scale, the browser is sandboxed, and a crashed browser is replaced."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

import agentgym
from agentgym.envs.browser import Browser
from agentgym.envs.gui.env import SEED_RANGES, kind_of, pick_target, render_screen
from agentgym.envs.gui.screens import KINDS, KINDS_HELD_OUT, screen_html

GUI = "agentgym/GUIGrounding-v0"


def test_every_tagged_box_is_where_the_page_puts_its_element(tmp_path):
    from importlib import resources

    css = resources.files("agentgym.assets").joinpath("gui/screen.css").read_text()
    browser = Browser()
    try:
        for index, kind in enumerate(KINDS):
            with browser.page(1280, 720) as page:
                page.set_content(screen_html(kind, 7 + index, css))
                hits = page.evaluate("""() => Array.from(document.querySelectorAll('[data-desc]')).map(e => {
                    const r = e.getBoundingClientRect();
                    if (r.width < 2 || r.height < 2 || r.bottom > innerHeight) return true;
                    const top = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
                    return top !== null && (top === e || e.contains(top) || top.closest('label') === e.closest('label'));
                })""")
            assert hits and all(hits), (kind, hits)
    finally:
        browser.close()


@pytest.mark.parametrize("split", ["train", "dev", "test", "test_ood"])
def test_the_oracle_hits_and_a_far_click_misses(split):
    env = agentgym.make(GUI, split=split)
    try:
        kinds = set()
        for task in env.unwrapped.tasks[:8]:
            observation, info = env.reset(options={"task_id": task.id})
            assert observation["image"].shape == (720, 1280, 3) and info["instruction"].startswith("Click ")
            kinds.add(task.payload["kind"])
            box = env.unwrapped.target_box()
            _, reward, terminated, _, info = env.step(env.unwrapped.expert_action())
            assert terminated and reward == 1.0 and info["won"], task.id
            env.reset(options={"task_id": task.id})
            outside = box.x2 + 40 if box.x2 + 40 < 1280 else box.x1 - 40
            _, reward, terminated, _, info = env.step(f"({outside}, {box.y1})")
            assert terminated and reward == 0.0 and not info["won"]
        assert kinds <= set(KINDS_HELD_OUT) if split == "test_ood" else not kinds & set(KINDS_HELD_OUT)
    finally:
        env.close()


@pytest.mark.parametrize("scale", ["pixels", "1000", "unit"])
def test_each_coordinate_scale_hits_with_the_oracle(scale):
    env = agentgym.make(GUI, split="test", scale=scale)
    try:
        for task in env.unwrapped.tasks[:5]:
            env.reset(options={"task_id": task.id})
            *_, info = env.step(env.unwrapped.expert_action())
            assert info["won"], (scale, task.id)
    finally:
        env.close()


def test_a_reply_without_coordinates_is_an_invalid_turn():
    env = agentgym.make(GUI, split="dev")
    try:
        env.reset(seed=0)
        observation, reward, terminated, truncated, info = env.step("the blue button")
        assert info["invalid_action"] and not terminated and not truncated and "point (x, y)" in observation["text"]
    finally:
        env.close()


def test_pages_reach_nothing_outside_file_and_data_urls():
    browser = Browser()
    try:
        with browser.page(400, 300) as page:
            page.set_content('<img src="http://example.com/pixel.png"><script>fetch("https://pypi.org/")'
                             '.catch(() => document.title = "blocked")</script>')
            page.wait_for_function("document.title === 'blocked'")
        assert any("example.com" in url for url in browser.blocked)
        assert any("pypi.org" in url for url in browser.blocked)
    finally:
        browser.close()


def test_a_killed_browser_is_replaced_and_close_frees_it(tmp_path):
    env = agentgym.make(GUI, split="test", cache_root=str(tmp_path))
    try:
        env.reset(options={"task_id": env.unwrapped.tasks[0].id})
        browser = env.unwrapped.browser
        pids = browser.pids
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        observation, info = env.reset(options={"task_id": env.unwrapped.tasks[1].id})  # not cached: renders
        assert browser.starts == 2 and observation["image"].shape == (720, 1280, 3)
    finally:
        env.close()
    assert not [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]


def test_rendering_is_deterministic_and_targets_are_unique(tmp_path):
    browser = Browser()
    try:
        seed = SEED_RANGES["test"][0] + 3
        first = render_screen(browser, kind_of("test", seed), seed, tmp_path / "a")
        second = render_screen(browser, kind_of("test", seed), seed, tmp_path / "b")
    finally:
        browser.close()
    assert first[1] == second[1] and first[0] == second[0]
    target = pick_target(first[1], seed)
    assert [element["desc"] for element in first[1]].count(target["desc"]) == 1


def test_multi_step_mode_performs_each_click_on_the_live_screen():
    env = agentgym.make("agentgym/GUIGrounding-v0", split="dev", steps=3)
    try:
        observation, info = env.reset(seed=1)
        instructions = [info["instruction"]]
        first_image = observation["image"]
        terminated, rewards = False, []
        while not terminated:
            observation, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            rewards.append(reward)
            if not terminated:
                instructions.append(info["instruction"])
        assert rewards == [1.0, 1.0, 1.0] and info["won"] and info["hits"] == 3
        assert len(set(instructions)) == 3  # three different targets
        observation, _ = env.reset(seed=1)
        assert (observation["image"] == first_image).all()  # a reset starts from the untouched screen
        observation, reward, terminated, _, info = env.step("(0, 0)")  # a miss: the episode goes on
        assert reward == 0.0 and not terminated and info["hits"] == 0 and observation["text"].startswith("You clicked")
        assert "missed" in observation["text"].splitlines()[0] and "Instruction:" in observation["text"]
    finally:
        env.close()


def test_several_envs_in_one_thread_share_playwrights_driver():
    """Evaluation steps browser envs sequentially in one thread; Playwright allows one driver per thread."""
    envs = [agentgym.make("agentgym/GUIGrounding-v0", split="dev", steps=2) for _ in range(2)]
    try:
        for index, env in enumerate(envs):
            env.reset(seed=index)
        for env in envs:
            _, reward, *_ = env.step(env.unwrapped.expert_action())
            assert reward == 1.0
    finally:
        for env in envs:
            env.close()
    env = agentgym.make("agentgym/GUIGrounding-v0", split="dev", steps=2)  # the driver restarts after the last close
    try:
        env.reset(seed=0)
    finally:
        env.close()


def test_all_elements_lists_every_element_and_the_target_box_through_info():
    """The public way to read a screen's elements and its target (the pointer trainer's data)."""
    env = agentgym.make(GUI, split="dev", all_elements=True)
    plain = agentgym.make(GUI, split="dev")
    try:
        task = env.unwrapped.tasks[2]
        observation, info = env.reset(options={"task_id": task.id})
        elements, (x1, y1, x2, y2) = info["elements"], info["target_box"]
        assert len(elements) > 5 and all(set(e) == {"description", "how", "box"} and len(e["box"]) == 4
                                         for e in elements)
        described = info["instruction"][len("Click "):-1]
        (target,) = [e for e in elements if e["description"] == described]
        assert x1 <= target["box"][0] < target["box"][2] <= x2 and y1 <= target["box"][1] < target["box"][3] <= y2
        _, reward, *_ = env.step(f"({(x1 + x2) / 2}, {(y1 + y2) / 2})")
        assert reward == 1.0
        plain_observation, plain_info = plain.reset(options={"task_id": task.id})  # off by default; same screen
        assert "elements" not in plain_info and "target_box" not in plain_info
        assert (plain_observation["image"] == observation["image"]).all()
    finally:
        env.close()
        plain.close()
    live = agentgym.make(GUI, split="dev", steps=2, all_elements=True)
    try:
        _, first = live.reset(seed=1)
        _, _, terminated, _, second = live.step(live.unwrapped.expert_action())
        assert not terminated and second["target_box"] != first["target_box"] and second["elements"]
    finally:
        live.close()
