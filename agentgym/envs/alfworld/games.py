"""ALFWorld games generated from what the ``alfworld`` wheel ships: its PDDL domain and text grammar, the
120 AI2-THOR floor plans' receptacles and object types, ALFRED's object/receptacle compatibility tables
and its goal library. The official game files are a download that does not work offline, so each game
is written here in the official layout (``traj_data.json`` + ``game.tw-pddl``) from
(floor plan, task type, seed), with a planner walkthrough that proves it solvable.

A game's problem follows ALFWorld's: every receptacle of the floor plan at its own location, pickupable
objects of the room's types (1-3 of each) in receptacles that can hold them, ALFRED's mangled ids (so
the engine's demangler names them ``apple 1``, ``countertop 2``), and the goal from ALFRED's goal
library. Differences from the official games: object placement is sampled from the compatibility table,
not from AI2-THOR physics, and no sliced objects, movable-receptacle stacking or human goal texts.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
              "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place")
# The appliance each state-change task needs, and the ALFRED ability its object must have.
_NEEDS = {"pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable"),
          "pick_heat_then_place_in_recep": ("Microwave", "Heatable"),
          "pick_cool_then_place_in_recep": ("Fridge", "Coolable")}
_ABILITY_FACTS = {"Cleanable": "cleanable", "Heatable": "heatable", "Coolable": "coolable"}
# ALFRED's compatibility table has no entry for lamps; desk lamps stand on these. A floor lamp stands on
# no receptacle, so the domain's toggle action (which needs one) cannot reach it: not used.
_LAMPS = ("DeskLamp",)
_LAMP_HOLDERS = {"Desk", "SideTable", "Dresser", "Shelf"}
_MANGLE = {"-": "_minus_", "|": "_bar_", "+": "_plus_", ".": "_dot_", ",": "_comma_"}


def _alfworld() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("alfworld")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("ALFWorld games need the alfworld engine: pip install 'agentgym[alfworld]'.",
                                  name="alfworld")
    return Path(spec.submodule_search_locations[0])


def floor_plans() -> list[int]:
    """Every floor plan the wheel ships a layout for."""
    return sorted(int(p.name[9:].split("-")[0]) for p in (_alfworld() / "gen" / "layouts").glob("FloorPlan*-objects.json"))


def unseen_floor_plans() -> set[int]:
    """ALFRED's test scenes (6 of 30 per room type): never used for train/dev/test, only ``test_ood``."""
    from alfworld.gen import constants

    return set(constants.TEST_SCENE_NUMBERS)


def mangle(thor_id: str) -> str:
    """An AI2-THOR id as ALFRED writes it in PDDL (``Apple|+00.27|...`` -> ``Apple_bar__plus_00_dot_27...``)."""
    return "".join(_MANGLE.get(char, char) for char in thor_id)


@cache
def _room(floor_plan: int) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The floor plan's receptacles (THOR id -> (type, location)) and the object types it holds."""
    from alfworld.gen import constants

    layouts = _alfworld() / "gen" / "layouts"
    poses = json.loads((layouts / f"FloorPlan{floor_plan}-openable.json").read_text())
    receptacles = {}
    for thor_id, (x, z, rotation, horizon) in sorted(poses.items()):
        parts = thor_id.split("|")
        kind = parts[-1] if len(parts) > 4 else parts[0]  # "Sink|x|y|z|SinkBasin" is the sink's basin
        if kind in ("Sink", "Bathtub"):  # the part that holds things is the basin, as in AI2-THOR
            kind, thor_id = kind + "Basin", f"{thor_id}|{kind}Basin"
        if kind in constants.RECEPTACLES and kind not in constants.MOVABLE_RECEPTACLES_SET:
            location = f"loc|{round(x / constants.AGENT_STEP_SIZE)}|{round(z / constants.AGENT_STEP_SIZE)}|{rotation}|{horizon}"
            receptacles[thor_id] = (kind, location)
    types = json.loads((layouts / f"FloorPlan{floor_plan}-objects.json").read_text())
    return receptacles, sorted(set(types))


def _holders(kind: str) -> set[str]:
    from alfworld.gen import constants

    if kind in _LAMPS:
        return _LAMP_HOLDERS
    return {rtype for rtype, contents in constants.VAL_RECEPTACLE_OBJECTS.items() if kind in contents}


def sample_game(floor_plan: int, task_type: str, seed: int) -> dict[str, Any] | None:
    """A game's content (receptacles, placed objects, targets) drawn from ``seed``, or ``None`` when the
    floor plan cannot host ``task_type`` (no microwave for heating, no desk lamp for light tasks...)."""
    from alfworld.gen import constants

    rng = random.Random(f"{floor_plan}/{task_type}/{seed}")
    receptacles, types = _room(floor_plan)
    kinds_here = {kind for kind, _ in receptacles.values()}
    portable = [t for t in types if t in constants.OBJECTS_SET and t not in kinds_here and t not in _LAMPS
                and _holders(t) & kinds_here and t not in constants.RECEPTACLES - constants.MOVABLE_RECEPTACLES_SET]
    lamps = [t for t in types if t in _LAMPS and _holders(t) & kinds_here]
    appliance, ability = _NEEDS.get(task_type, (None, None))
    if appliance and appliance not in kinds_here or task_type == "look_at_obj_in_light" and not lamps:
        return None
    candidates = [t for t in portable if ability is None or t in constants.VAL_ACTION_OBJECTS[ability]]
    rng.shuffle(candidates)
    for target in candidates:
        if task_type == "look_at_obj_in_light":
            parent = None
        else:
            # ALFRED never asks to put a thing into the appliance that changes it; the object must start
            # somewhere else than the kind of place it is asked to go to.
            places = [p for p in sorted(_holders(target) & kinds_here - {appliance}) if _holders(target) & kinds_here - {p}]
            if not places:
                continue
            parent = rng.choice(places)
        break
    else:
        return None
    objects = []  # (thor id, type, receptacle thor id)
    for kind in [*portable, *lamps]:
        count = rng.randint(2, 3) if kind == target and task_type == "pick_two_obj_and_place" else rng.randint(1, 3)
        if kind in lamps:
            count = 1
        allowed = [r for r, (rkind, _) in receptacles.items() if rkind in _holders(kind) and (kind != target or rkind != parent)]
        if not allowed:
            continue
        for _ in range(count):
            holder = rng.choice(allowed)
            position = "|".join(f"{rng.uniform(-3, 3):+06.2f}" for _ in range(3))
            objects.append((f"{kind}|{position}", kind, holder))
    return {"floor_plan": floor_plan, "task_type": task_type, "seed": seed, "object": target, "receptacle": parent,
            "toggle": lamps[0] if task_type == "look_at_obj_in_light" else None,
            "receptacles": receptacles, "objects": objects, "template": rng.randrange(2)}


def goal_text(game: dict[str, Any]) -> str:
    """The task sentence, from ALFRED's goal templates (as ALFWorld's ``get_templated_task_desc``)."""
    from alfworld.gen import goal_library

    template = goal_library.gdict[game["task_type"]]["templates"][game["template"]]
    return template.format(obj=game["object"].lower(), recep=(game["receptacle"] or "").lower(),
                           toggle=(game["toggle"] or "").lower(), mrecep="")


def pddl_problem(game: dict[str, Any]) -> str:
    """The game's PDDL problem in ALFRED's form (mangled ids, one location per receptacle)."""
    from alfworld.gen import constants, goal_library

    receptacles, objects = game["receptacles"], game["objects"]
    start = mangle("loc|0|0|0|30")  # the middle of the room: no receptacle there
    where = {thor_id: mangle(location) for thor_id, (_, location) in receptacles.items()}
    kinds_here = {kind for kind, _ in receptacles.values()}
    types_here = {kind for _, kind, _ in objects}
    lines = ["(= (total-cost) 0)", f"(atLocation agent1 {start})"]
    for thor_id, (kind, _) in receptacles.items():
        lines += [f"(receptacleType {mangle(thor_id)} {kind}Type)", f"(receptacleAtLocation {mangle(thor_id)} {where[thor_id]})"]
        if kind in constants.OPENABLE_CLASS_SET:
            lines.append(f"(openable {mangle(thor_id)})")
    for thor_id, kind, holder in objects:
        name = mangle(thor_id)
        lines += [f"(objectType {name} {kind}Type)", f"(inReceptacle {name} {mangle(holder)})",
                  f"(objectAtLocation {name} {where[holder]})"]
        if kind in _LAMPS:
            lines.append(f"(toggleable {name})")
            continue
        lines.append(f"(pickupable {name})")
        lines += [f"({fact} {name})" for ability, fact in _ABILITY_FACTS.items()
                  if kind in constants.VAL_ACTION_OBJECTS[ability]]
    for rkind in sorted(kinds_here):
        lines += [f"(canContain {rkind}Type {kind}Type)" for kind in sorted(types_here)
                  if kind in constants.VAL_RECEPTACLE_OBJECTS.get(rkind, ())]
    # Only the type constants in play (ALFRED declares all ~130; every extra one multiplies the actions
    # the engine grounds each step), plus the appliance types the domain's actions name.
    declared = (["agent1 - agent", f"{start} - location"] + [f"{loc} - location" for loc in sorted(set(where.values()))]
                + [f"{mangle(r)} - receptacle" for r in receptacles] + [f"{mangle(o)} - object" for o, _, _ in objects]
                + [f"{t}Type - otype" for t in sorted(types_here)]
                + [f"{t}Type - rtype" for t in sorted(kinds_here | {"SinkBasin", "Microwave", "Fridge"})])
    goal = goal_library.gdict[game["task_type"]]["pddl"].format(
        obj=game["object"], recep=game["receptacle"] or "", toggle=game["toggle"] or "", mrecep="").replace("#", "-")
    return (f"(define (problem plan_{game['floor_plan']}_{game['seed']})\n    (:domain alfred)\n"
            "    (:objects\n        " + "\n        ".join(declared) + "\n    )\n"
            "    (:init\n        " + "\n        ".join(lines) + "\n    )\n" + goal)


# Games per task type in each split, and where each split's seeds start (splits never share a seed).
SPLIT_SIZES = {"train": 100, "dev": 10, "test": 10, "test_ood": 10}
_SEED_BASE = {"train": 0, "dev": 1_000_000, "test": 2_000_000, "test_ood": 3_000_000}
# Where the generated games go, in the official layout (``json_2.1.1/<split>/<task folder>/trial_s<seed>``).
OFFICIAL_SPLIT_DIRS = {"train": "train", "dev": "valid_train", "test": "valid_seen", "test_ood": "valid_unseen"}


def split_games(split: str) -> list[dict[str, Any]]:
    """The split's games: ``SPLIT_SIZES[split]`` per task type, on seen floor plans (``test_ood``: the
    unseen ones), drawn from the split's own seeds. Deterministic, needs no engine (only the wheel's data)."""
    unseen = unseen_floor_plans()
    plans = [p for p in floor_plans() if (p in unseen) == (split == "test_ood")]
    games = []
    for number, task_type in enumerate(TASK_TYPES):
        first = seed = _SEED_BASE[split] + 10_000 * number
        found = []
        while len(found) < SPLIT_SIZES[split]:
            game = sample_game(plans[seed % len(plans)], task_type, seed)
            if game is not None:
                found.append(game)
            seed += 1
            if seed - first > 20 * SPLIT_SIZES[split] + len(plans):
                raise RuntimeError(f"No floor plan of split {split!r} can host {task_type}.")
        games += found
    return games


def folder_name(game: dict[str, Any]) -> str:
    """ALFRED's trajectory folder name: ``<task type>-<object>-<movable receptacle>-<receptacle>-<scene>``."""
    second = game["receptacle"] or game["toggle"]
    return f"{game['task_type']}-{game['object']}-None-{second}-{game['floor_plan']}/trial_s{game['seed']}"


def traj_data(game: dict[str, Any]) -> dict[str, Any]:
    """The part of ALFRED's ``traj_data.json`` that ALFWorld reads."""
    return {"task_type": game["task_type"], "task_id": folder_name(game).replace("/", "_"),
            "scene": {"floor_plan": f"FloorPlan{game['floor_plan']}", "scene_num": game["floor_plan"],
                      "random_seed": game["seed"]},
            "pddl_params": {"object_target": game["object"], "parent_target": game["receptacle"] or "",
                            "toggle_target": game["toggle"] or "", "mrecep_target": "", "object_sliced": False},
            "turk_annotations": {"anns": [{"task_desc": goal_text(game)}]}}


def game_data(game: dict[str, Any]) -> dict[str, Any]:
    """``game.tw-pddl``: the wheel's domain, its grammar with the goal text, and the game's problem."""
    data_dir = _alfworld() / "data"
    grammar = (data_dir / "alfred.twl2").read_text().replace("UNKNOWN GOAL", goal_text(game))
    return {"pddl_domain": (data_dir / "alfred.pddl").read_text(), "grammar": grammar,
            "pddl_problem": pddl_problem(game), "solvable": True}


def scripted_walkthrough(game: dict[str, Any], names: dict[str, str]) -> list[str]:
    """A walkthrough written from the game's spec, as ALFWorld's hand-coded expert plays: go to where a
    target object lies (opening what is closed), take it, change it at the appliance, go to the goal
    receptacle and put it there (or, for light tasks, switch on the lamp). ``names`` maps THOR ids to
    the names the engine shows (``apple 1``). Instant, where fast-downward's optimal plan takes up to
    minutes in a kitchen; the caller replays it on the engine to check that it wins."""
    from alfworld.gen import constants

    receptacles, opened, steps = game["receptacles"], set(), []

    def reach(receptacle: str) -> None:
        steps.append(f"go to {names[receptacle]}")
        if receptacles[receptacle][0] in constants.OPENABLE_CLASS_SET and receptacle not in opened:
            steps.append(f"open {names[receptacle]}")
            opened.add(receptacle)

    targets = [(thor_id, holder) for thor_id, kind, holder in game["objects"] if kind == game["object"]]
    goal = next((r for r, (kind, _) in receptacles.items() if kind == game["receptacle"]), None)
    appliance, _ = _NEEDS.get(game["task_type"], (None, None))
    verb = {"SinkBasin": "clean", "Microwave": "heat", "Fridge": "cool"}.get(appliance)
    for thor_id, holder in targets[: 2 if game["task_type"] == "pick_two_obj_and_place" else 1]:
        reach(holder)
        steps.append(f"take {names[thor_id]} from {names[holder]}")
        if verb:
            station = next(r for r, (kind, _) in receptacles.items() if kind == appliance)
            steps.append(f"go to {names[station]}")
            steps.append(f"{verb} {names[thor_id]} with {names[station]}")
        if game["task_type"] == "look_at_obj_in_light":
            lamp, lamp_holder = next((o, h) for o, kind, h in game["objects"] if kind == game["toggle"])
            steps += [f"go to {names[lamp_holder]}", f"use {names[lamp]}"]
        else:
            reach(goal)
            steps.append(f"move {names[thor_id]} to {names[goal]}")
    return steps
