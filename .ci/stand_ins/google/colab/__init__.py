"""CI stand-in for Colab's `google.colab`: only `drive`, which mounts a local folder (`$STROKE_CT_FAKE_DRIVE`) instead of
Google Drive. `.ci/walkthroughs.py` puts this folder on PYTHONPATH to run the walkthrough notebooks as on Colab."""
