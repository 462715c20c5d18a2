/* SPDX-License-Identifier: Apache-2.0 */
/* A library defining gpucap_probe(), built twice (PROBE_LETTER 'A' and 'C')
 * for the RTLD_NEXT test. */
char gpucap_probe(void);
char gpucap_probe_marker(void);

char gpucap_probe(void)
{
	return PROBE_LETTER;
}

char gpucap_probe_marker(void)
{
	return PROBE_LETTER;
}
