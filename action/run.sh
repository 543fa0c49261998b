#!/usr/bin/env bash
# The action's one step (action.yml): run the verb, keep its exit code, write the markdown to
# the job summary and the outputs to GITHUB_OUTPUT. Fails the step only on exit 1 (an error):
# 2 (changes, drift) and 3 (a guard would block apply) are results the summary shows.
set -uo pipefail

verb="${AUTHPOLICY_VERB:-plan}"
config="${AUTHPOLICY_CONFIG:-policies.yaml}"
format="${AUTHPOLICY_FORMAT:-markdown}"
case "${format}" in
  markdown|text) ;;
  *) echo "::error::authpolicy action: format must be markdown or text, not '${format}'"; exit 1 ;;
esac
out_dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/authpolicy"
mkdir -p "${out_dir}"
markdown="${out_dir}/${verb}.md"
plan_path=""
read -r -a extra <<< "${AUTHPOLICY_ARGS:-}"
tenants="${AUTHPOLICY_TENANTS:-}"

if [ -n "${tenants}" ]; then
  # Many tenants: every verb runs for each tenant of tenants.yaml (docs/fleet.md).
  plans="${out_dir}/tenants"
  case "${verb}" in
    plan)
      plan_path="${plans}"
      authpolicy plan --tenants "${tenants}" --out-dir "${plans}" --format "${format}" \
        --detailed-exitcode "${extra[@]}" > "${markdown}"
      code=$?
      ;;
    drift|report)
      authpolicy "${verb}" --tenants "${tenants}" --out-dir "${plans}" --format "${format}" \
        "${extra[@]}" > "${markdown}"
      code=$?
      ;;
    apply)
      authpolicy apply --tenants "${tenants}" --plans "${AUTHPOLICY_PLAN:-${plans}}" \
        --auto-approve "${extra[@]}" > "${markdown}"
      code=$?
      ;;
    doctor)
      authpolicy doctor --tenants "${tenants}" "${extra[@]}" > "${markdown}"
      code=$?
      ;;
    validate)
      authpolicy tenants check --tenants "${tenants}" "${extra[@]}" > "${markdown}"
      code=$?
      ;;
    *)
      echo "::error::authpolicy action: unknown verb '${verb}' (plan, drift, apply, validate, report, doctor)"
      exit 1
      ;;
  esac
else
case "${verb}" in
  plan)
    plan_path="${out_dir}/plan.json"
    authpolicy plan -c "${config}" --format "${format}" --out "${plan_path}" --detailed-exitcode \
      "${extra[@]}" > "${markdown}"
    code=$?
    ;;
  drift)
    authpolicy drift -c "${config}" --format "${format}" "${extra[@]}" > "${markdown}"
    code=$?
    ;;
  report)
    authpolicy report --format "${format}" "${extra[@]}" > "${markdown}"
    code=$?
    ;;
  apply)
    if [ -n "${AUTHPOLICY_PLAN:-}" ]; then
      authpolicy apply "${AUTHPOLICY_PLAN}" -c "${config}" --auto-approve "${extra[@]}" \
        > "${markdown}"
    else
      authpolicy apply -c "${config}" --auto-approve "${extra[@]}" > "${markdown}"
    fi
    code=$?
    ;;
  validate)
    authpolicy validate -c "${config}" "${extra[@]}" > "${markdown}"
    code=$?
    ;;
  doctor)
    authpolicy doctor "${extra[@]}" > "${markdown}"
    code=$?
    ;;
  *)
    echo "::error::authpolicy action: unknown verb '${verb}' (plan, drift, apply, validate, report, doctor)"
    exit 1
    ;;
esac
fi

cat "${markdown}"  # the log shows what the summary shows
# Text output (apply, validate, doctor, --format text) reads best as a code block.
if [ "${format}" = text ] || [ "${verb}" = apply ] || [ "${verb}" = validate ] \
  || [ "${verb}" = doctor ]; then
  { printf '### authpolicy %s\n\n```text\n' "${verb}"; cat "${markdown}"; printf '```\n'; } \
    > "${markdown}.tmp" && mv "${markdown}.tmp" "${markdown}"
fi
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "${markdown}" >> "${GITHUB_STEP_SUMMARY}"; fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "exit-code=${code}"
    echo "plan-path=${plan_path}"
    echo "markdown-path=${markdown}"
  } >> "${GITHUB_OUTPUT}"
fi
if [ "${code}" -eq 1 ]; then
  echo "::error::authpolicy ${verb} failed (exit 1); see the log above"
  exit 1
fi
exit 0
