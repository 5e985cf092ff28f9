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
), t AS (
  SELECT
    *,
    (
      (
        __et - 1
      ) - (
        (
          (
            __et - 1
          ) % 5000000
        ) + 5000000
      ) % 5000000
    ) DIV 5000000 AS __k
  FROM ev
  WHERE
    __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000
)
SELECT
  __key,
  __k,
  COUNT(*) FILTER(WHERE
    TRUE) AS p0,
  COUNT(*) FILTER(WHERE
    TRUE) AS p1,
  COUNT(*) FILTER(WHERE
    TRUE) AS p2,
  MAX_BY(
    STRUCT(__et AS t, __seq AS s, `v_item` AS v),
    (
      CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
    )
  ) FILTER(WHERE
    NOT `v_item` IS NULL) AS p3,
  MAX_BY(
    STRUCT(__et AS t, __seq AS s, `v_seen` AS v),
    (
      CAST(__et AS DECIMAL(38, 0)) * 1000000000000 + __seq
    )
  ) FILTER(WHERE
    NOT `v_seen` IS NULL) AS p4
FROM t
WHERE
  __k >= 354464580
GROUP BY
  __key,
  __k
ORDER BY
  __key NULLS LAST,
  __k NULLS LAST
