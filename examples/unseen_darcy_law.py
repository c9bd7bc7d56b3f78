"""Write task files of a Darcy law the benchmark never trains on, to test models on your own data.

    python examples/unseen_darcy_law.py            # writes lognormal.h5 and lognormal20.h5
    nips-plugin benchmark --data lognormal.h5 --models nips
    nips-plugin benchmark --data lognormal20.h5 --models nips

Log-normal permeability (the Darcy preset's out-of-distribution law, here for
training and test alike, another seed): 50 training and 10 unseen systems of 100
input/response pairs on 21x21 nodes; ``lognormal20.h5`` keeps only the first 20
pairs of each system (the benchmark then picks d = 16 context pairs and q = 4
queries). Any file in this format works (see the README's task file format).
"""

from nips_plugin.data import make_darcy_tasks, save_tasks

tasks = make_darcy_tasks(n=21, n_pairs=100, n_train=50, n_test=10, n_ood=0, seed=7, law="lognormal")
save_tasks("lognormal.h5", tasks.f, tasks.u, params=tasks.params, split=tasks.split, **tasks.attrs)
save_tasks("lognormal20.h5", tasks.f[:, :20], tasks.u[:, :20], params=tasks.params, split=tasks.split,
           **{**tasks.attrs, "n_pairs": 20})
print(f"wrote lognormal.h5 ({tasks.n_systems} systems x {tasks.n_pairs} pairs) and lognormal20.h5 (20 pairs)")
