"""Task functions for llava_demo_qa (llava_demo_qa.yaml).

Each doc is one line of the jsonl that run_lmms_eval_demo.py writes:
{"question_id", "image_path" (absolute), "question" (without "<image>\\n"), "answer"}.
"""
from PIL import Image


def doc_to_visual(doc):
    with Image.open(doc["image_path"]) as im:
        return [im.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    # The question only: the demo model knows nothing but its training phrasings.
    return doc["question"]


def doc_to_target(doc):
    return doc["answer"]


def process_results(doc, results):
    prediction = results[0]
    prediction = getattr(prediction, "text", prediction)  # a plain string in 0.7.3
    return {"exact_match": float(str(prediction).strip().lower() == doc["answer"].strip().lower())}
