"""The update path: pure state machine, chunk assembly and probation judge, and their shell."""
