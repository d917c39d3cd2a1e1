"""Select boxes are sent back from the browser by their label: two items with one label could not both be chosen."""

from builder.ui.common import distinct_labels


def test_labels_two_items_share_get_their_ids_and_the_others_stay_as_they_are():
    same = "faq-chatbot · trained 05 Dec 01:56"
    labels = {"svc-1": same, "svc-2": same, "svc-3": "x"}
    shown = distinct_labels(labels)
    assert shown == {
        "svc-1": "faq-chatbot · trained 05 Dec 01:56 (svc-1)",
        "svc-2": "faq-chatbot · trained 05 Dec 01:56 (svc-2)",
        "svc-3": "x",
    }
    assert len(set(shown.values())) == len(shown)


def test_block_names_read_as_words_with_the_article_they_are_spoken_with():
    from builder.ui.words import block_name, with_article

    names = {ref: block_name(ref) for ref in ("chat.faq-csv@1.0.0", "chat.minilm-encoder", "chat.mpnet-encoder",
                                              "service.api@1.0.0", "vision.small-cnn")}  # fmt: skip
    assert names == {
        "chat.faq-csv@1.0.0": "FAQ CSV",
        "chat.minilm-encoder": "MiniLM encoder",
        "chat.mpnet-encoder": "MPNet encoder",
        "service.api@1.0.0": "API",
        "vision.small-cnn": "Small CNN",
    }
    # "MPNet" is read letter by letter ("em-pee-net"), "MiniLM" as a word.
    assert [with_article(n) for n in names.values()] == [
        "an FAQ CSV", "a MiniLM encoder", "an MPNet encoder", "an API", "a Small CNN"]  # fmt: skip
