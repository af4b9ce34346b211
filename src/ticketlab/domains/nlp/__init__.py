"""Lottery tickets in language models and translation (Yu, Edunov, Tian & Morcos 2019, arXiv 1906.02768).

Two tasks for the lottery engine (`ticketlab.engine.tasks`), run with `ticketlab lottery --task lm ...`
or `--task translate ...`:

- `lm_task`: word-level LSTM (Zaremba et al. 2014) or causal-Transformer language models on the
  Penn Treebank, WikiText-2 (with a user-supplied training file) or, by character, Tiny Shakespeare;
  metric: test perplexity at the iteration of lowest validation perplexity.
- `translate_task`: a small encoder–decoder Transformer on Multi30k (En→De by default), with a
  sentencepiece tokenizer trained on the training split; metric: sacrebleu test BLEU at the
  iteration of lowest validation loss.

Modules: `corpora` (checksummed readers), `vocab` (word/char vocabularies, token streams),
`tokenizer` (sentencepiece), `lm_models`, `transformer` (blocks), `seq2seq`, `decode` (greedy, beam),
`loop` (the resumable training loop both tasks share).
Needs the `nlp` extra (sentencepiece, sacrebleu) for translation.
"""
