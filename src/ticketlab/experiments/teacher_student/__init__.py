"""Teacher–student analysis of deep ReLU networks: student specialization, luck, and node tickets.

Reproduces and extends Tian, Jiang, Gong & Morcos 2019, "Luck Matters: Understanding Training
Dynamics of Deep ReLU Networks" (arXiv 1905.13405), and Tian 2019, "Student Specialization in
Deep ReLU Networks With Finite Width and Input Dimension" (arXiv 1909.13458, ICML 2020): an
over-realized student trained on a fixed teacher specializes — some student nodes align with
teacher nodes, the fan-out of the others shrinks toward zero — strong teacher nodes are learned
first, and the winners are the "lucky" nodes initialised closest to a teacher node.

- `net`: stacked fully connected ReLU / leaky-ReLU networks (S networks as one computation);
- `teacher`: random grid teachers (strength decay, bias tuning), or a pruned trained network;
- `student`: over-realized students and their initialisations;
- `metrics`: correlations, best matches, success rate, L-shape, luck;
- `prune`: node pruning by fan-out, and the ticket it defines;
- `optim`: SGD and Adam on stacked parameters, checkpointed per network;
- `spec`: the experiment's config, and one run's teacher, data and files on the results store;
- `loop`: stacked, resumable training of a group of runs, with the logged metrics;
- `experiment`: experiments end to end (train, prune, retrain tickets) and their readouts;
- `tables`, `plots`, `cli`: CSV tables, figures and the `ticketlab teacher-student` command.
"""

from ticketlab.experiments.teacher_student.experiment import TeacherStudentConfig, run

__all__ = ["TeacherStudentConfig", "run"]
