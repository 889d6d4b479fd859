/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML documents (kubeconfigs, resources as `kubectl apply` takes them) as jansson values,
 * through libyaml. JSON is YAML, so a JSON file loads too.
 */
#ifndef MESHMASK_CLI_YAML_H
#define MESHMASK_CLI_YAML_H

#include <stddef.h>

#include <jansson.h>

/*
 * The first document of text[0..len) as a new value: mappings become objects (keys must be
 * scalars), sequences arrays, plain scalars null/booleans/integers/reals when they read as
 * such in YAML 1.2's core schema, every other scalar a string. NULL on error, with
 * "LINE:COLUMN: problem" in err.
 */
json_t *cli_yaml_load(const char *text, size_t len, char *err, size_t err_size);

/* cli_yaml_load() of a file's contents; errors as "FILE: ...". */
json_t *cli_yaml_load_file(const char *path, char *err, size_t err_size);

#endif
