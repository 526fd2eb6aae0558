"""What a run reports: card, figures, gate, calibration; from the wheel's own answers."""
