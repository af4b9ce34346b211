"""Floor 6, the experiments: lottery tickets (IMP trunk, controls, instability), sparse training,
ticket transfer and the teacher-student lab.
"""
