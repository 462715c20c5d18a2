/* SPDX-License-Identifier: Apache-2.0 */
/* An empty shared library standing in for libgpucap.so in the "gpucap run"
 * tests: they check the environment, not what the library does. */
int gpucap_cli_test_fake_preload(void);

int gpucap_cli_test_fake_preload(void)
{
	return 0;
}
