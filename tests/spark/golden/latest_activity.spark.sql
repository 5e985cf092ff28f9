WITH ev AS (
  SELECT
    `customer_id` AS __key,
    _event_time_us AS __et,
    _seq AS __seq,
    _ingested_at_us AS __ing,
    `amount` AS `v_amount`,
    `flag` AS `v_flag`,
    `item` AS `v_item`,
    `kind` AS `v_kind`,
    `price` AS `v_price`,
    `qty` AS `v_qty`,
    UNIX_MICROS(`seen`) AS `v_seen`
  FROM events
  WHERE
    NOT `customer_id` IS NULL
    AND (
      (
        (
          `kind` <> 'skip'
        ) OR (
          `kind` IS NULL
        )
      )
      AND (
        NOT (
          `item` IN ('bot')
        )
      )
    )
)
SELECT
  __key,
  MAX_BY(
    STRUCT(__et AS t, __seq AS s, `v_kind` AS v0, `v_price` AS v1, `v_seen` AS v2, `v_flag` AS v3),
    (
      CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
    )
  ) AS __latest
FROM ev
WHERE
  __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000
GROUP BY
  __key
ORDER BY
  __key NULLS LAST
