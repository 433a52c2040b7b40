"""The training run, in reading order.

``command`` (what ``hybridconv train`` does with a config), ``train``
(``train_and_evaluate``, ``create_train_state``, ``train_step``, ``eval_step``),
``state``, ``loop``, ``optim``, ``metrics``, ``validation``, ``progress``,
``workdir``, ``checkpointing``, ``nonfinite``, ``preemption``, ``faults``.
Submodules are imported by name (``from hybridconv.training import train``) so
that importing one does not compile or import the others.
"""
