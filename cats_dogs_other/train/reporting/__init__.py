"""What a run reports after the model is built: the champion-and-challenger gate, the
calibration of the served probabilities and the drift references, each computed from the
answers the wheel gives on held-out files (the path the API serves), never from cached features.
"""
