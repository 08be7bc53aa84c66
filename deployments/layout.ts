/**
 * @module
 * Where deployments keep their files in the state folder: the repository, the records, the staging
 * copies of commits being checked, the function builds. One place, for the code that writes them and
 * the code that tidies what a dead push left.
 */
import { join } from 'node:path';

/** The deployments' folders under `stateDir`. */
export function deployLayout(stateDir: string) {
  return {
    /** The folder holding functions.git (GIT_PROJECT_ROOT). */
    gitRoot: join(stateDir, 'git'),
    /** One record per deployment, and `current`. */
    recordsDir: join(stateDir, 'deployments'),
    /** Where a commit's functions/ is written while it is checked. */
    stagingDir: join(stateDir, 'staging'),
    /** Immutable, content-addressed function builds: `<name>/<version>/`. */
    buildsDir: join(stateDir, 'builds'),
  };
}
