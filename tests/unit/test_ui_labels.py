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
