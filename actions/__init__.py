"""The action server: thin Rasa SDK actions for the bank hotline (actions/bank/ is the bank service module)."""
