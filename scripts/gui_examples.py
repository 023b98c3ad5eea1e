"""Draw a few GUI grounding tasks (screenshot, instruction, target box) into docs/images/ for the README.

    python scripts/gui_examples.py [--split test --split test_ood]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

import agentgym

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", action="append", default=None)
    parser.add_argument("--per-split", type=int, default=2)
    args = parser.parse_args()
    for split in args.split or ["test", "test_ood"]:
        env = agentgym.make("agentgym/GUIGrounding-v0", split=split)
        try:
            for seed in range(args.per_split):
                observation, info = env.reset(seed=seed)
                box = env.unwrapped.target_box()
                screen = Image.fromarray(observation["image"])
                image = Image.new("RGB", (screen.width, screen.height + 40), (20, 20, 20))
                image.paste(screen)
                draw = ImageDraw.Draw(image)
                draw.rectangle([box.x1 - 2, box.y1 - 2, box.x2 + 2, box.y2 + 2], outline=(230, 20, 60), width=4)
                draw.text((10, screen.height + 8), f"{split} / {info['task_id']}: {info['instruction']}",
                          fill=(255, 255, 255), font_size=22)
                path = OUT / f"gui-{split}-{seed}.png"
                image.resize((image.width // 2, image.height // 2), Image.LANCZOS).save(path, optimize=True)
                print(path)
        finally:
            env.close()


if __name__ == "__main__":
    main()
