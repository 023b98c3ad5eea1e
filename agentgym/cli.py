"""The ``agentgym`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import gymnasium

DEBUG_ENV = "AGENTGYM_DEBUG"

EPILOG = """\
examples:
  agentgym list                                   every env id with its splits, and the policies
  agentgym play agentgym/TextWorld-CoinCollector-v0 --split dev
                                                  play a game yourself in the terminal
  agentgym rollout agentgym/TextWorld-Simple-v0 --policy random --episodes 8 --group-size 4 \\
      --out runs/simple.jsonl                     write turn records (JSONL) for a trainer
  agentgym collect agentgym/TextWorld-CoinCollector-v0 --episodes 300 --won-only --out data/coin.jsonl
                                                  expert (oracle) trajectories for behaviour cloning
  agentgym eval agentgym/TextWorld-CoinCollector-v0 --split test --policy random --policy oracle \\
      --episodes 20 --seeds 0 1 2                 held-out evaluation, mean ± std over seeds
  agentgym eval agentgym/TextWorld-CoinCollector-v0 --policy embedded --episodes 10 --seeds 0 1 2
                                                  the offline SmolLM2-135M model, choosing among admissible actions
  agentgym eval ENV_ID --policy hf:./checkpoints/step-100       a local checkpoint
  agentgym eval ENV_ID --policy openai:gpt-4o-mini              OpenAI (OPENAI_API_KEY)
  agentgym eval ENV_ID --policy openai:Qwen2.5-7B@http://127.0.0.1:8000/v1   a vLLM server
  agentgym serve-policy --model embedded --port 8000            serve a model to OpenAI-compatible clients
  agentgym serve-env agentgym/TextWorld-CoinCollector-v0 --port 8100
                                                  serve an env over OpenEnv; play it as openenv:http://127.0.0.1:8100
  agentgym train configs/grpo-coin-level5.yaml iterations=10 lr=3e-5
                                                  train (trainer: grpo | epo | ppo | sft | pipeline);
                                                  --resume continues a killed run
  agentgym report results/*.json                  result files as one Markdown table
  agentgym view runs/demo --out demo.html         see episodes, groups and curves in one shareable HTML file
  agentgym view runs/demo results/*.json --serve  the same from a local server (large runs; compare several)
  agentgym doctor                                 what is installed, and how to fix what is not
  agentgym eval user/MyGame-v0 --import mygame    an env your module registers (agentgym.register) on import;
                                                  or name it module:id: agentgym eval mygame:user/MyGame-v0
  agentgym --debug eval ...                       the full traceback of an error (or AGENTGYM_DEBUG=1)

policies: random | oracle | embedded | tiny | hf:PATH | openai:MODEL[@BASE_URL]
  settings with --policy-kwargs, e.g. '{"mode": "generate", "temperature": 0.7}'
"""


def _parse_json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object, e.g. \'{"max_turns": 30}\'')
    return value


def _add_env_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    parser.add_argument("env_id", help="an env id from `agentgym list`, e.g. agentgym/TextWorld-CoinCollector-v0; "
                                       "module:ENV_ID imports the module that registers ENV_ID first")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, e.g. one that calls agentgym.register (repeatable; the "
                             "current folder is searched too)")
    parser.add_argument("--split", default=default_split, help=f"task split (default: {default_split})")
    parser.add_argument("--env-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                        help='constructor arguments of the env, e.g. \'{"max_turns": 30}\'')


def _add_policy_kwargs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                        help='policy settings, e.g. \'{"mode": "generate", "temperature": 0}\' for LLM policies')


def _add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-envs", type=int, default=4, help="environments stepped together (default: 4)")
    parser.add_argument("--concurrency", choices=("auto", "sequential", "thread", "process", "ray"), default="auto",
                        help="how the environments run; auto takes the family's measured best; ray: one Ray "
                             "actor per env, on $RAY_ADDRESS or a local Ray instance (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentgym",
        description="Multi-turn RL environments, rollouts and held-out evaluation for LLM agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    commands.add_parser("list", help="list env ids (with splits) and policies")

    play = commands.add_parser("play", help="play an env yourself in the terminal",
                               description="Play an environment: type an action, or the number of an admissible "
                                           "action; ':q' quits, ':r' restarts with a new task.")
    _add_env_arguments(play, "dev")
    play.add_argument("--seed", type=int, default=None, help="seed of the first task (default: random)")
    play.add_argument("--task-id", default=None, help="play this task id")
    play.add_argument("--policy", default=None,
                      help="let a policy play while you watch (e.g. embedded, oracle); Enter steps, ':q' quits")
    _add_policy_kwargs(play)

    rollout = commands.add_parser("rollout", help="run a policy and write turn records as JSONL",
                                  description="Run a policy on tasks of a split, in groups that share a task, and "
                                              "write one trajectory per line (agentgym.read_jsonl reads them).")
    collect = commands.add_parser(
        "collect", help="collect expert trajectories for behaviour cloning (JSONL turn records)",
        description="Run a policy (the env's oracle by default) on tasks of a split and write one trajectory "
                    "per line: the records RL uses, ready for `trainer: sft` (data: [FILE]) and loadable with "
                    "datasets.load_dataset('json', data_files=FILE). Use the prompt settings you will train with.")
    for command, policy, episodes in ((rollout, "random", 8), (collect, "oracle", 200)):
        _add_env_arguments(command, "train")
        command.add_argument("--policy", default=policy, help=f"policy (see below `policies:`; default: {policy})")
        _add_policy_kwargs(command)
        command.add_argument("--episodes", type=int, default=episodes,
                             help=f"number of distinct tasks (default: {episodes})")
        command.add_argument("--group-size", type=int, default=1, help="episodes per task (default: 1)")
        command.add_argument("--seed", type=int, default=0,
                             help="seed for task sampling and the policy (default: 0)")
        command.add_argument("--history-window", type=int, default=3,
                             help="recent turns shown in each prompt (default: 3; match the trainer's setting)")
        command.add_argument("--prompt-style", choices=("summary", "chat"), default="summary",
                             help="summary: one message with recent turns; chat: the whole episode (default: summary)")
        command.add_argument("--won-only", action="store_true", help="write only the trajectories that won")
        command.add_argument("--out", type=Path, required=True, help="output JSONL file")
        _add_pool_arguments(command)

    evaluate = commands.add_parser("eval", help="held-out evaluation over seeds, written to a result file",
                                   description="Evaluate policies on a split: each seed samples its own tasks and "
                                               "seeds the policy; the summary is mean ± std over seeds.")
    _add_env_arguments(evaluate, "test")
    evaluate.add_argument("--policy", action="append", default=None,
                          help="policy, e.g. random, oracle, embedded, hf:PATH, openai:MODEL[@URL]; repeat to "
                               "compare several (default: random)")
    _add_policy_kwargs(evaluate)
    evaluate.add_argument("--episodes", type=int, default=20, help="episodes per seed (default: 20)")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    evaluate.add_argument("--out", type=Path, default=Path("results"),
                          help="folder for result files, one per policy (default: results/)")
    _add_pool_arguments(evaluate)

    report = commands.add_parser("report", help="render result files as a Markdown table")
    report.add_argument("results", nargs="+", type=Path, help="result files written by `agentgym eval`")

    commands.add_parser("doctor", help="check the install and say how to fix what is missing")

    check = commands.add_parser(
        "check", help="check that an env follows the agentgym contract (run it on your own envs)",
        description="Run the contract checker (agentgym.check_env) on an env id: types and info keys, seeding, "
                    "invalid actions as invalid turns, the turn budget, close() freeing every process, and "
                    "determinism: an action script replayed in the same env and in a fresh one must give the "
                    "same episode. Exit status 1 names the broken rule and how to fix it.")
    _add_env_arguments(check, "test")
    check.add_argument("--seed", type=int, default=0, help="reset seed of the checks (default: 0)")
    check.add_argument("--steps", type=int, default=5, help="length of the short type and invalid-action episodes")
    check.add_argument("--determinism-steps", type=int, default=None, metavar="N",
                       help="length of the replayed action script (default: 30, long enough for simulated "
                            "processes to run a few ticks); 0 skips the replays")

    view = commands.add_parser(
        "view", help="see what the agent did: episodes, groups and runs in a browser",
        description="Open turn records (.jsonl), `agentgym eval` result files (.json) and run folders (several "
                    "to compare them): an episode list to filter and sort, each episode turn by turn, groups side "
                    "by side, learning curves and held-out results. --out writes one self-contained HTML file "
                    "(no network); --serve serves the page from 127.0.0.1 and loads episodes as they are opened.")
    view.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                      help="a turn-record .jsonl, a result .json, a run folder, or a folder of run folders")
    shown = view.add_mutually_exclusive_group(required=True)
    shown.add_argument("--out", type=Path, metavar="FILE.html", help="write one self-contained HTML file")
    shown.add_argument("--serve", action="store_true", help="serve the viewer at http://127.0.0.1:PORT/")
    view.add_argument("--port", type=int, default=8765, help="port for --serve (default: 8765; 0 takes a free one)")
    view.add_argument("--tokenizer", default=None, metavar="PATH",
                      help="a tokenizer folder to decode reply tokens with ('none': never decode; default: the "
                           "run's final/ or the cached tokenizer of the model the records name, when on disk)")
    view.add_argument("--env-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                      help="constructor arguments of the envs, for re-rendering screens (a run's config.json "
                           "gives its own)")
    view.add_argument("--no-screens", action="store_true", help="do not re-render screenshots of image envs")
    view.add_argument("--max-episodes", type=int, default=1000,
                      help="--out: full records embedded at most (default: 1000; the list shows every episode)")
    view.add_argument("--max-screens", type=int, default=60, help="--out: screenshots embedded at most (default: 60)")

    trainer = commands.add_parser(
        "train", help="train a policy from a YAML config (GRPO, GiGPO, EPO, ...)",
        description="Train with the trainer the config names (`trainer: grpo` or `trainer: epo`); every other "
                    "key is a setting of that trainer's config. key=value arguments override the file, e.g. "
                    "`agentgym train configs/demo.yaml iterations=5 lr=3e-5`. The run folder (output_dir) "
                    "gets metrics.jsonl, TensorBoard logs, checkpoint.pt, learning_curves.png and report.md.")
    trainer.add_argument("config", type=Path, nargs="?", help="YAML config file (see configs/)")
    trainer.add_argument("overrides", nargs="*", metavar="key=value", help="settings that override the file")
    trainer.add_argument("--resume", action="store_true", help="continue the run in output_dir from its checkpoint")
    trainer.add_argument("--help-config", metavar="TRAINER", default=None,
                         help="print every setting of TRAINER (grpo, epo, ppo, sft, ...) with its default and meaning")

    server = commands.add_parser(
        "serve-policy", help="serve a local model over an OpenAI-compatible HTTP API",
        description="Serve a local model at http://HOST:PORT/v1 (/v1/models, /v1/chat/completions with n, "
                    "temperature, top_p, max_tokens, stop, seed and logprobs). Use it from agentgym with "
                    "--policy openai:MODEL_ID@http://HOST:PORT/v1, or from any OpenAI client.")
    server.add_argument("--model", default="embedded", help="embedded, tiny, or a checkpoint folder (default: embedded)")
    server.add_argument("--adapter", default=None, help="a LoRA adapter folder to apply")
    server.add_argument("--model-id", default=None, help="the name clients use (default: the --model value)")
    server.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    server.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    server.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every request")
    server.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    env_server = commands.add_parser(
        "serve-env", help="serve an env id over the OpenEnv protocol (HTTP and WebSocket sessions)",
        description="Serve ENV_ID through openenv-core's server at http://HOST:PORT: WebSocket sessions at /ws, HTTP "
                    "sessions at /reset, /step, /state and /close, and /schema, /health. Each session owns one env. "
                    "Play it from agentgym with agentgym.make('openenv:http://HOST:PORT') or ENV_ID "
                    "openenv:http://HOST:PORT on any command. Needs the server extra.")
    env_server.add_argument("env_id", help="an env id from `agentgym list`; module:ENV_ID imports the module first")
    env_server.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                            help="import MODULE first, e.g. one that calls agentgym.register (repeatable)")
    env_server.add_argument("--split", dest="splits", nargs="+", default=None, metavar="SPLIT",
                            help="the splits sessions may play; the first is the default (default: every split)")
    env_server.add_argument("--env-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                            help='constructor arguments of every session\'s env, e.g. \'{"max_turns": 30}\'')
    env_server.add_argument("--host", default="127.0.0.1",
                            help="interface to bind (default: 127.0.0.1, this machine only)")
    env_server.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    env_server.add_argument("--api-key", default=None,
                            help="require 'Authorization: Bearer KEY' on every request and WebSocket handshake")
    env_server.add_argument("--max-sessions", type=int, default=16,
                            help="sessions open at once; past it a new one is refused, not queued (default: 16)")
    env_server.add_argument("--idle-timeout", type=float, default=300.0,
                            help="seconds after which an idle session is closed and its env freed (default: 300)")
    env_server.add_argument("--max-body", type=int, default=1 << 20,
                            help="largest request body or WebSocket message in bytes (default: 1 MiB)")

    debug_help = f"on an error, show the full traceback (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # Also accepted after the command; SUPPRESS keeps the top-level value when it is not given there.
    for command in commands.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("agentgym")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cmd_list(_: argparse.Namespace) -> int:
    from agentgym.multiagent import list_multiagent_envs, multiagent_spec
    from agentgym.policies import list_policies
    from agentgym.registry import list_envs, spec

    print("Environments:")
    for env_id in list_envs():
        env_spec = spec(env_id)
        print(f"  {env_id:42s} splits: {', '.join(env_spec.splits):28s} {env_spec.description}")
    print("\nMulti-agent environments (agentgym.make_multiagent; PettingZoo AEC and parallel APIs):")
    for env_id in list_multiagent_envs():
        ma_spec = multiagent_spec(env_id)
        print(f"  {env_id:42s} splits: {', '.join(ma_spec.splits):28s} {ma_spec.description}")
    print("\nPolicies: " + ", ".join(list_policies()))
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    from agentgym.registry import make

    if args.policy:
        return _watch(args)
    env = make(args.env_id, split=args.split, **args.env_kwargs)
    try:
        options = {"task_id": args.task_id} if args.task_id else None
        observation, info = env.reset(seed=args.seed, options=options)
        print(f"Task {info['task_id']} ({args.split})\nGoal: {info['instruction']}\n")
        total = 0.0
        while True:
            print(observation["text"])
            actions = observation["admissible_actions"]
            if actions:
                print("\n" + "  ".join(f"[{i}] {a}" for i, a in enumerate(actions, 1)))
            typed = _ask()
            if typed in (None, ":q"):
                return 0
            if typed == ":r":
                observation, info = env.reset()
                print(f"\nTask {info['task_id']}\nGoal: {info['instruction']}\n")
                total = 0.0
                continue
            if typed.isdigit() and actions and 1 <= int(typed) <= len(actions):
                typed = actions[int(typed) - 1]
            observation, reward, terminated, truncated, info = env.step(typed)
            total += reward
            if reward:
                print(f"(reward {reward:+g}, total {total:g})")
            if terminated or truncated:
                print(observation["text"])
                outcome = "won" if info["won"] else ("out of turns" if truncated else "lost")
                print(f"\nEpisode over: {outcome}, return {total:g}, {info['turn']} turns. ':r' or Enter for a new "
                      "task, ':q' to quit.")
                if _ask() in (None, ":q"):
                    return 0
                observation, info = env.reset()
                print(f"\nTask {info['task_id']}\nGoal: {info['instruction']}\n")
                total = 0.0
    finally:
        env.close()


def _ask() -> str | None:
    """A line typed at the prompt, or ``None`` at the end of input (Ctrl-D or a piped script)."""
    try:
        return input("> ").strip()
    except EOFError:
        return None


def _watch(args: argparse.Namespace) -> int:
    """A policy plays one episode at a time through the rollout engine; the person reads along."""
    from agentgym.policies import make_policy
    from agentgym.rollout import RolloutEngine

    policy = make_policy(args.policy, seed=args.seed, **args.policy_kwargs)
    try:
        with RolloutEngine(args.env_id, args.split, num_envs=1, concurrency="sequential",
                           env_kwargs=args.env_kwargs) as engine:
            seed = args.seed or 0

            def show(turn, observation) -> None:
                print(f">>> {'(invalid) ' if turn.invalid else ''}{turn.action}   [reward {turn.reward:+g}]\n")
                print(observation["text"] + "\n")

            while True:
                plan = engine.plan(task_ids=[args.task_id] if args.task_id else None,
                                   num_tasks=None if args.task_id else 1, seed=seed)
                task = engine.tasks[plan[0].task_id]
                print(f"Task {task.id} ({args.split}), played by {policy.name}\n")
                (trajectory,) = engine.run(policy, plan, on_turn=show)
                outcome = "won" if trajectory.won else ("out of turns" if trajectory.truncated else "lost")
                print(f"Episode over: {outcome}, return {trajectory.total_reward:g}, {trajectory.num_turns} turns.")
                try:
                    if input("Enter for another task, ':q' to quit > ").strip() == ":q":
                        return 0
                except EOFError:
                    return 0
                seed += 1
    finally:
        policy.close()


def _cmd_rollout(args: argparse.Namespace) -> int:
    from agentgym.evaluation import episode_metrics
    from agentgym.policies import make_policy
    from agentgym.prompting import PromptTemplate
    from agentgym.records import write_jsonl
    from agentgym.rollout import RolloutEngine

    policy = make_policy(args.policy, seed=args.seed, **args.policy_kwargs)
    template = PromptTemplate(history_window=args.history_window, style=args.prompt_style)
    try:
        with RolloutEngine(args.env_id, args.split, num_envs=args.num_envs, concurrency=args.concurrency,
                           env_kwargs=args.env_kwargs, template=template) as engine:
            plan = engine.plan(num_tasks=args.episodes, group_size=args.group_size, seed=args.seed)
            trajectories = engine.run(policy, plan, progress=f"{args.policy} {args.command}")
    finally:
        policy.close()
    metrics = episode_metrics(trajectories)
    kept = [t for t in trajectories if t.won] if args.won_only else trajectories
    write_jsonl(args.out, kept)
    print(f"Wrote {len(kept)} trajectories ({sum(t.num_turns for t in kept)} turns) to {args.out}; "
          f"success {metrics['success_rate']:.1%}, mean reward {metrics['mean_reward']:.2f}.")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from agentgym.evaluation import evaluate, markdown_table, write_results

    results = []
    for policy in args.policy or ["random"]:
        result = evaluate(args.env_id, policy, split=args.split, episodes=args.episodes, seeds=args.seeds,
                          num_envs=args.num_envs, concurrency=args.concurrency, env_kwargs=args.env_kwargs,
                          policy_kwargs=args.policy_kwargs, progress=True)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", policy).strip("_")
        name = f"{args.env_id.replace('/', '_')}-{args.split}-{label}.json"
        path = write_results(result, args.out / name)
        print(f"wrote {path}", file=sys.stderr)
        results.append(result)
    print(markdown_table(results))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from agentgym.evaluation import markdown_table, read_results

    print(markdown_table([read_results(path) for path in args.results]))
    return 0


def read_config(path: Path) -> Any:
    """A YAML config; a key given twice is an error (plain YAML silently keeps the last one)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ValueError(f"{path}, line {key_node.start_mark.line + 1}: the key {key!r} is set twice.")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(path.read_text(), Loader=UniqueKeyLoader)


def import_modules(names: list[str]) -> None:
    """Import modules that register env ids (``--import``, the ``module:`` of ``module:ENV_ID``, a config's
    ``imports:``). The current folder is searched too, as ``python -m`` would; worker processes import
    each module that registered an id they make (:attr:`agentgym.registry.EnvSpec.module`)."""
    if names and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        importlib.import_module(name)


def _resolve_env_id(args: argparse.Namespace) -> None:
    """Import the ``--import`` modules and the ``module`` of ``module:ENV_ID`` (Gymnasium's form)."""
    modules = list(args.imports)
    module, colon, env_id = args.env_id.partition(":")
    if colon and not args.env_id.startswith("openenv:"):  # openenv:URL is a server session, not module:ENV_ID
        if not module or not env_id:
            raise ValueError(f"{args.env_id!r}: write module:ENV_ID, e.g. mygame:user/MyGame-v0.")
        modules.append(module)
        args.env_id = env_id
    import_modules(modules)


def _trainers() -> dict[str, Any]:
    import importlib.metadata

    return {ep.name: ep for ep in importlib.metadata.entry_points(group="agentgym.trainers")}


def _help_config(name: str) -> int:
    import importlib

    trainers = _trainers()
    if name not in trainers:
        raise ValueError(f"Unknown trainer {name!r}; installed trainers: {', '.join(sorted(trainers))}.")
    module = importlib.import_module(trainers[name].module)
    config_class = getattr(module, "CONFIG", None)
    if config_class is None:
        print((module.__doc__ or f"{name} has no settings of its own.").strip())
        return 0
    print(f"Settings of `trainer: {name}` ({config_class.__name__}); set them in the YAML or as key=value:\n")
    print(config_class.describe())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.help_config:
        return _help_config(args.help_config)
    if args.config is None:
        raise ValueError("agentgym train needs a YAML config (see configs/), or --help-config TRAINER.")
    settings = read_config(args.config) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{args.config} must hold a mapping of settings.")
    imports = settings.pop("imports", None) or []
    if isinstance(imports, str):
        imports = [imports]
    if not (isinstance(imports, list) and all(isinstance(name, str) for name in imports)):
        raise ValueError(f"{args.config}: imports must be a list of module names, e.g. imports: [mygame].")
    import_modules(imports)
    name = settings.pop("trainer", "grpo")
    trainers = _trainers()
    if name not in trainers:
        raise ValueError(f"Unknown trainer {name!r} in {args.config}; installed trainers: {', '.join(sorted(trainers))}.")
    overrides = list(args.overrides) + (["resume=true"] if args.resume else [])
    result = trainers[name].load()(settings, overrides)
    print(Path(result["report"]).read_text())
    return 0


def _cmd_serve_policy(args: argparse.Namespace) -> int:
    from agentgym.serve import serve

    serve(args.model, host=args.host, port=args.port, api_key=args.api_key, model_id=args.model_id,
          adapter=args.adapter, threads=args.threads)
    return 0


def _cmd_serve_env(args: argparse.Namespace) -> int:
    from agentgym.envserver.server import serve

    serve(args.env_id, splits=tuple(args.splits) if args.splits else None, env_kwargs=args.env_kwargs,
          host=args.host, port=args.port, api_key=args.api_key, max_sessions=args.max_sessions,
          idle_timeout=args.idle_timeout, max_body=args.max_body)
    return 0


def _cmd_doctor(_: argparse.Namespace) -> int:
    from agentgym.doctor import report, run_checks

    text, healthy = report(run_checks())
    print(text)
    return 0 if healthy else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from agentgym.checker import DETERMINISM_STEPS, EnvCheckError, check_env
    from agentgym.registry import make

    steps = DETERMINISM_STEPS if args.determinism_steps is None else args.determinism_steps
    try:
        check_env(lambda: make(args.env_id, split=args.split, **args.env_kwargs), seed=args.seed,
                  steps=args.steps, determinism_steps=steps)
    except EnvCheckError as error:
        print(f"{args.env_id} ({args.split}) breaks the contract: {error}", file=sys.stderr)
        return 1
    replays = f", {steps}-step replays identical in the same env and a fresh one" if steps else ""
    print(f"{args.env_id} ({args.split}) passes check_env (seed {args.seed}{replays})")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from agentgym.viewer import open_viewer, serve, write_html

    viewer = open_viewer(args.paths, tokenizer=args.tokenizer, screens=not args.no_screens, env_kwargs=args.env_kwargs)
    try:
        for warning in viewer.collection.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.serve:
            serve(viewer, port=args.port)
        else:
            path = write_html(viewer, args.out, max_episodes=args.max_episodes, max_screens=args.max_screens)
            print(f"wrote {path} ({viewer.collection.index()['total']} episodes); open it in a browser")
    finally:
        viewer.close()
    return 0


def _debugging(args: argparse.Namespace) -> bool:
    """``--debug`` or ``AGENTGYM_DEBUG`` set to 1 (true, yes, on)."""
    return args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": _cmd_list, "play": _cmd_play, "rollout": _cmd_rollout, "collect": _cmd_rollout,
               "eval": _cmd_eval, "report": _cmd_report, "doctor": _cmd_doctor, "check": _cmd_check, "serve-policy": _cmd_serve_policy,
               "serve-env": _cmd_serve_env,
               "train": _cmd_train, "view": _cmd_view}[args.command]
    try:
        if hasattr(args, "env_id"):
            _resolve_env_id(args)
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, ModuleNotFoundError, FileNotFoundError, ConnectionError, PermissionError, RuntimeError,
            gymnasium.error.Error) as error:
        if _debugging(args):
            raise
        hint = f"(run with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(f"agentgym {args.command}: error: {error} {hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
