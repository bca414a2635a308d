// Plural forms through Intl.PluralRules: no hand-written plural logic in the
// string tables. `plurals('ar')(3, {one: '# غرفة', few: '# غرف', other: '# غرفة'})`
// picks the form for the number's category ("=0" style exact forms first)
// and writes the number, formatted for the language, where "#" stands.

export function plurals(locale) {
  const rules = new Intl.PluralRules(locale);
  const numbers = new Intl.NumberFormat(locale);
  return (n, forms) => {
    const form = forms[`=${n}`] ?? forms[rules.select(n)] ?? forms.other;
    return form.replaceAll('#', numbers.format(n));
  };
}
