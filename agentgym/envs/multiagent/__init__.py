"""Multi-agent games on PettingZoo's AEC API: tic-tac-toe and connect four (PettingZoo's classic
engines, rendered as text), a cooperative referential game and a negotiation.

Install with ``pip install 'agentgym[multiagent]'``. Each game is registered twice: as a multi-agent id
(``agentgym.make_multiagent``) and as single-agent seat views against fixed opponents
(``agentgym.make``), which every trainer can use.
"""

from __future__ import annotations

from agentgym.doctor import Check, package_check
from agentgym.multiagent import register_multiagent
from agentgym.registry import register

GAMES = {
    # multi-agent id: (game class, splits, description, single-agent views {id: kwargs})
    "agentgym/TicTacToe-v0": ("agentgym.envs.multiagent.classic:TicTacToe", ("train", "dev", "test"),
                              "Tic-tac-toe (PettingZoo tictactoe_v3) as text; seeds pick the opening.",
                              {"agentgym/TicTacToe-vs-Random-v0": {"opponents": "random"},
                               "agentgym/TicTacToe-vs-Expert-v0": {"opponents": "expert"}}),
    "agentgym/ConnectFour-v0": ("agentgym.envs.multiagent.classic:ConnectFour", ("train", "dev", "test"),
                                "Connect four (PettingZoo connect_four_v3) as text; seeds pick the opening.",
                                {"agentgym/ConnectFour-vs-Random-v0": {"opponents": "random"}}),
    "agentgym/ReferentialGame-v0": ("agentgym.envs.multiagent.referential:ReferentialGame",
                                    ("train", "dev", "test", "test_ood"),
                                    "Cooperative: a speaker names one of 4 objects in 2 words, a listener picks it.",
                                    {"agentgym/Referential-Speaker-v0": {"seat": "speaker", "opponents": "expert"},
                                     "agentgym/Referential-Listener-v0": {"seat": "listener", "opponents": "expert"}}),
    "agentgym/Negotiation-v0": ("agentgym.envs.multiagent.negotiation:Negotiation",
                                ("train", "dev", "test", "test_ood"),
                                "Split books, hats and balls with private values; deal or no deal.",
                                {"agentgym/Negotiation-vs-Expert-v0": {"seat": "alice", "opponents": "expert"}}),
}


def register_envs() -> None:
    """Register the multi-agent ids and their single-agent seat views (entry point ``agentgym.envs:
    multiagent``); imports no engine."""
    for env_id, (game, splits, description, views) in GAMES.items():
        register_multiagent(env_id, game, splits=splits, description=description, extra="multiagent")
        for view_id, kwargs in views.items():
            opponent = f"{kwargs.get('seat', 'first mover')} vs {kwargs['opponents']} opponents"
            register(view_id, "agentgym.envs.multiagent.view:SeatView", splits=splits, extra="multiagent",
                     description=f"{description} Single-agent view: {opponent}.",
                     kwargs={"game": game, **kwargs}, concurrency="sequential")


def doctor_checks() -> list[Check]:
    """What ``agentgym doctor`` checks for this family (entry point ``agentgym.doctor: multiagent``)."""
    return [package_check("pettingzoo", "multiagent", "multi-agent games")]
