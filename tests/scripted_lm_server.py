"""mlx-lm's own server (``mlx_lm.server``) whose random-weight model says
scripted answers, one per request (the last again after): the answers come as
a JSON list in ``MLX_MAGIC_TEST_ANSWERS``; the rest of the command line is the
server's. Every answer's token is still chosen by the server's own sampler,
among logits the model computed (mlx_magic.testing.scripted forces them), so
the server's template, tool-call parsing and streaming are the real ones."""

import json
import os
import sys

import mlx_lm.server as server

from mlx_magic.testing.scripted import end_token_id, scripted_logits_processor

answers = json.loads(os.environ["MLX_MAGIC_TEST_ANSWERS"])
original = server._make_sampler


def scripted_sampler(args, tokenizer):
    real = original(args, tokenizer)
    answer = answers.pop(0) if len(answers) > 1 else answers[0]
    ids = tokenizer.encode(answer, add_special_tokens=False)
    choose = scripted_logits_processor(ids, end_token_id(tokenizer))
    return lambda logprobs: real(choose(None, logprobs))


server._make_sampler = scripted_sampler
sys.argv = ["mlx_lm.server", *sys.argv[1:]]
server.main()
