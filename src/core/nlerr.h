/*
 * libnl reports failures as its own NLE_* codes; drafter's core speaks
 * -errno. Every module that calls libnl converts at that boundary with this.
 */
#ifndef DRAFTER_NLERR_H
#define DRAFTER_NLERR_H

/* NLE (either sign) → -errno; 0 stays 0 and codes without a match become -EIO. */
int nlerr_to_errno(int nle);

#endif
