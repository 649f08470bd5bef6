"""Text: streaming corpora and vocabularies, training on text, embedding sources and
linear word analogies (paper section 4)."""

from attnmoe.text.analogy import (
    AnalogyResult,
    evaluate_analogies,
    evaluate_word_analogies_gensim,
    format_markdown,
    load_questions,
)
from attnmoe.text.embeddings import (
    Embeddings,
    from_arrays,
    from_attnmoe,
    from_gensim,
    from_huggingface,
    from_keyed_vectors,
    glove_6b_50d,
    load_source,
    minilm_l6,
    register_source,
    train_word2vec,
)

__all__ = [
    "AnalogyResult",
    "Embeddings",
    "evaluate_analogies",
    "evaluate_word_analogies_gensim",
    "format_markdown",
    "from_arrays",
    "from_attnmoe",
    "from_gensim",
    "from_huggingface",
    "from_keyed_vectors",
    "glove_6b_50d",
    "load_questions",
    "load_source",
    "minilm_l6",
    "register_source",
    "train_word2vec",
]

from attnmoe.text.corpus import (
    HuggingFaceTokenizer,
    RegexTokenizer,
    TextCorpus,
    demo_corpus_path,
    load_tokenizer,
)
from attnmoe.text.vocab import Vocabulary

__all__ += [
    "HuggingFaceTokenizer",
    "RegexTokenizer",
    "TextCorpus",
    "Vocabulary",
    "demo_corpus_path",
    "load_tokenizer",
]
