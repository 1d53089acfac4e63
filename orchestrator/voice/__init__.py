"""Cascade voice sessions: audio, turns, sentences, history, spoken replies."""
