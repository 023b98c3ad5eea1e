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


def test_answer_logprobs_score_exactly_the_answer_tokens():
    policy = make_policy("tiny-vlm", seed=0, max_new_tokens=4)
    image = (np.random.default_rng(0).random((720, 1280, 3)) * 255).astype(np.uint8)
    request = PolicyRequest([{"role": "user", "content": "Instruction: Click Send.\nReply (x, y)."}], image=image)
    (group,) = policy.sample([request], 3, temperature=1.0, top_p=1.0)
    assert all(1 <= len(g.token_ids) <= 4 and len(g.logprobs) == len(g.token_ids) for g in group)
    answers = [[11, 12, 13], [21]]  # answers of different lengths in one padded batch
    # Against one plain forward over prompt + answer: position p - 1 predicts token p.
    prompt = policy.inputs(request)
    for answer, logp in zip(answers, policy.answer_logprobs([request] * 2, answers, temperature=0.7, grad=False)[0]):
        ids = torch.cat([prompt["input_ids"], torch.tensor([answer])], dim=1)
        with torch.no_grad():
            logits = policy.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  pixel_values=prompt["pixel_values"]).logits[0]
        start = prompt["input_ids"].shape[1] - 1
        want = torch.log_softmax(logits[start : start + len(answer)] / 0.7, -1)[torch.arange(len(answer)), answer]
        assert torch.allclose(logp, want, atol=1e-5)
    # Gradients reach only the positions that predict an answer token: not the prompt, the image or padding.
    captured = []

    def keep(module, inputs, output):
        inputs[0].retain_grad()
        captured.append(inputs[0])

    hook = policy.model.get_output_embeddings().register_forward_hook(keep)
    try:
        logps, _ = policy.answer_logprobs([request] * 2, answers, temperature=0.7, grad=True)
        sum(lp.sum() for lp in logps).backward()
    finally:
        hook.remove()
    (hidden,) = captured
    assert hidden.shape[1] == 3 + 1  # the longest answer's positions and one after it, never the prompt's
    touched = hidden.grad.abs().sum(-1) > 0
    assert touched.tolist() == [[True, True, True, False], [True, False, False, False]]
