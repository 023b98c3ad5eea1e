"""A local vision-language policy (transformers image-text-to-text) on a tiny random LLaVA: the screenshot
reaches the model, replies come back as text, and the GUI env scores them."""

from __future__ import annotations

import numpy as np
import torch

import agentgym
from agentgym.policies import PolicyRequest, make_policy


def test_the_image_reaches_the_model_and_replies_are_scored_by_the_env():
    policy = make_policy("tiny-vlm", seed=0, max_new_tokens=6)
    env = agentgym.make("agentgym/GUIGrounding-v0", split="dev")
    try:
        observation, _ = env.reset(seed=0)
        request = PolicyRequest([{"role": "user", "content": observation["text"]}], image=observation["image"])
        chat = policy.chat(request)
        assert chat[-1]["content"][0] == {"type": "image"} and "Instruction:" in chat[-1]["content"][1]["text"]

        def logits(image):
            prompt = policy.processor.apply_chat_template(policy.chat(PolicyRequest(request.messages, image=image)),
                                                          add_generation_prompt=True)
            from PIL import Image

            inputs = policy.processor(images=[Image.fromarray(image)], text=[prompt], return_tensors="pt")
            assert (inputs["input_ids"] == policy.model.config.image_token_index).sum() > 0
            with torch.no_grad():
                return policy.model(**inputs).logits[0, -1]

        assert not torch.allclose(logits(observation["image"]), logits(np.zeros_like(observation["image"])))
        (reply,) = policy.act([request])
        assert isinstance(reply.text, str) and len(reply.token_ids) <= 6
        _, reward, terminated, _, info = env.step(reply.text)  # gibberish: an invalid turn, not a crash
        assert reward in (0.0, 1.0) and (terminated or info["invalid_action"])
    finally:
        env.close()
