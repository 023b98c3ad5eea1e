"""The ``agentgym`` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import gymnasium

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
  agentgym train configs/grpo-coin-level5.yaml iterations=10 lr=3e-5
                                                  train (trainer: grpo | epo | ppo | sft | pipeline);
                                                  --resume continues a killed run
  agentgym report results/*.json                  result files as one Markdown table
  agentgym doctor                                 what is installed, and how to fix what is not

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
    parser.add_argument("env_id", help="an env id from `agentgym list`, e.g. agentgym/TextWorld-CoinCollector-v0")
    parser.add_argument("--split", default=default_split, help=f"task split (default: {default_split})")
    parser.add_argument("--env-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                        help='constructor arguments of the env, e.g. \'{"max_turns": 30}\'')


def _add_policy_kwargs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-kwargs", type=_parse_json_object, default={}, metavar="JSON",
                        help='policy settings, e.g. \'{"mode": "generate", "temperature": 0}\' for LLM policies')


def _add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-envs", type=int, default=4, help="environments stepped together (default: 4)")
    parser.add_argument("--concurrency", choices=("auto", "sequential", "thread", "process"), default="auto",
                        help="how the environments run; auto takes the family's measured best (default: auto)")


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

    trainer = commands.add_parser(
        "train", help="train a policy from a YAML config (GRPO, GiGPO, EPO, ...)",
        description="Train with the trainer the config names (`trainer: grpo` or `trainer: epo`); every other "
                    "key is a setting of that trainer's config. key=value arguments override the file, e.g. "
                    "`agentgym train configs/demo.yaml iterations=5 lr=3e-5`. The run folder (output_dir) "
                    "gets metrics.jsonl, TensorBoard logs, checkpoint.pt, learning_curves.png and report.md.")
    trainer.add_argument("config", type=Path, help="YAML config file (see configs/)")
    trainer.add_argument("overrides", nargs="*", metavar="key=value", help="settings that override the file")
    trainer.add_argument("--resume", action="store_true", help="continue the run in output_dir from its checkpoint")

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


def _cmd_train(args: argparse.Namespace) -> int:
    import importlib.metadata

    settings = read_config(args.config) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{args.config} must hold a mapping of settings.")
    name = settings.pop("trainer", "grpo")
    trainers = {ep.name: ep for ep in importlib.metadata.entry_points(group="agentgym.trainers")}
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


def _cmd_doctor(_: argparse.Namespace) -> int:
    from agentgym.doctor import report, run_checks

    text, healthy = report(run_checks())
    print(text)
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": _cmd_list, "play": _cmd_play, "rollout": _cmd_rollout, "collect": _cmd_rollout,
               "eval": _cmd_eval, "report": _cmd_report, "doctor": _cmd_doctor, "serve-policy": _cmd_serve_policy,
               "train": _cmd_train}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, ModuleNotFoundError, FileNotFoundError, ConnectionError, PermissionError, RuntimeError,
            gymnasium.error.Error) as error:
        print(f"agentgym {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
