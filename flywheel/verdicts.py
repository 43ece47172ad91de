"""The judge's verdict names, defined once for every domain and for the LLM committee.

A verdict says what the judge found about a candidate label; `final_label` (in
verdicts.parquet) says what training gets. Rows without a usable verdict are held out
of training, never guessed.
"""

LABEL_OK, LABEL_WRONG, MODEL_WRONG, BOTH_WRONG = "label_ok", "label_wrong", "model_wrong", "both_wrong"
NO_CONSENSUS, JUDGE_ERROR, TEACHER_ERROR = "no_consensus", "judge_error", "teacher_error"
VERDICTS = (LABEL_OK, LABEL_WRONG, MODEL_WRONG, BOTH_WRONG, NO_CONSENSUS, JUDGE_ERROR, TEACHER_ERROR)
WRONG = (LABEL_WRONG, BOTH_WRONG)  # the label itself was found wrong
